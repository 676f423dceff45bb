"""The RV-Syn library: starter functions, canonical merging, the graph, and sampling strategies on it."""

from __future__ import annotations

import inspect
import random
import re
from collections import Counter
from fractions import Fraction
from itertools import pairwise

import networkx as nx
import pytest

from curate.synth import starter
from curate.synth.canonical import canonical_hash
from curate.synth.graph import build_graph, cooccurrence_view, library_stats, load_graph
from curate.synth.library import (
    LibraryFunction,
    Param,
    add_functions,
    install_starter,
    load_functions,
    load_uses,
    starter_functions,
)
from curate.synth.merge import merge_equivalent, merge_identical
from curate.synth.sampling import sample_functions
from tests.conftest import count
from tests.test_synth_support import sandbox_pool

pool = pytest.fixture(scope="module", name="pool")(sandbox_pool)


# -- the starter library ------------------------------------------------------------------------------


def test_starter_functions_are_typed_documented_and_templated():
    functions = starter_functions()
    assert len(functions) >= 50
    assert {f.topic for f in functions} == set(starter.TOPICS)
    for f in functions:
        signature = inspect.signature(starter.STARTER[f.name].function)
        assert [p.name for p in f.params] == list(signature.parameters), f.name
        assert all(p.kind in ("int", "num") and p.lo < p.hi for p in f.params), f.name
        assert f.returns in ("int", "num") and f.doc and "\n" not in f.doc
        assert sorted(re.findall(r"{(\w+)}", f.template)) == sorted(p.name for p in f.params), f.name
        assert f.code.startswith(f"def {f.name}(") and "@starter" not in f.code


def test_every_starter_function_runs_in_the_sandbox_on_its_ranges(pool):
    from curate.synth.compose import build_program, draw

    rng = random.Random(0)
    programs, expected = [], []
    for f in starter_functions():
        args = {p.name: draw(p, rng) for p in f.params}
        call = ", ".join(f"{k}={v!r}" for k, v in args.items())
        programs.append(build_program([(f, f.name)], f"def solution():\n    return {f.name}({call})\n"))
        expected.append(starter.STARTER[f.name].function(**args))
    for f, result, value in zip(starter_functions(), pool.map(programs), expected):
        assert result.ok, (f.name, result.error)
        assert result.value == pytest.approx(value), f.name
        assert isinstance(value, int) or f.returns == "num", f.name      # an int result is declared int


def test_worked_examples_execute(pool):
    functions = {f.name: f for f in starter_functions()}
    from curate.synth.compose import build_program

    for name, solution in starter.EXAMPLES.items():
        result = pool.execute(build_program([(f, f.name) for f in functions.values()], solution))
        assert result.ok and isinstance(result.value, (int, float, Fraction)), (name, result.error)
        assert len({s.function for s in result.trace}) >= 2, name


# -- canonical form and merging --------------------------------------------------------------------


def test_canonical_form_ignores_names_docstrings_and_annotations():
    a = 'def total(price: float, count: int) -> float:\n    """Total."""\n    cost = price * count\n    return cost\n'
    b = "def cost_of(p, n):\n    x = p * n\n    return x\n"
    swapped = "def cost_of(p, n):\n    x = n * p\n    return x\n"
    other_constant = "def cost_of(p, n):\n    x = p * n * 2\n    return x\n"
    assert canonical_hash(a) == canonical_hash(b)
    assert canonical_hash(a) != canonical_hash(swapped) != canonical_hash(other_constant)
    # builtins and module names are not renamed: sqrt vs floor differ
    assert canonical_hash("def f(x):\n    return math.sqrt(x)\n") != canonical_hash("def f(x):\n    return math.floor(x)\n")


def llm_function(code: str, name: str, params, returns="num", topic="arithmetic") -> LibraryFunction:
    return LibraryFunction(name=name, code=code, params=params, returns=returns, doc="An LLM function.",
                           topic=topic, topic_origin="keywords", origin="llm", model="test")


NUM = [Param("x", "num", 1, 100, 1), Param("y", "num", 1, 100, 1)]


def test_identical_functions_merge_into_the_first_and_are_recorded(store):
    install_starter(store)
    assert merge_identical(store) == []            # starter functions never merge into each other
    same_as_percent_of = llm_function('def pct(p: float, w: float) -> float:\n    """Percent."""\n'
                                      "    return p * w / 100\n", "pct", NUM)
    twice_a = llm_function("def twice(v: float) -> float:\n    return 2 * v\n", "twice", NUM[:1])
    twice_b = llm_function('def double_it(amount: float) -> float:\n    """Double."""\n    return 2 * amount\n',
                           "double_it", NUM[:1])
    add_functions(store, [same_as_percent_of, twice_a, twice_b],
                  [(same_as_percent_of.function_id, "seed-1"), (twice_a.function_id, "seed-1"),
                   (twice_b.function_id, "seed-2")], run_id="r1")
    merges = merge_identical(store, "r1")
    percent_of = next(f for f in starter_functions() if f.name == "percent_of")
    assert {(m.kept_id, m.merged_id, m.method) for m in merges} == {
        (percent_of.function_id, same_as_percent_of.function_id, "ast"),
        (twice_a.function_id, twice_b.function_id, "ast")}
    assert count(store, "SELECT count(*) FROM synth_merges WHERE run_id = 'r1' AND method = 'ast'") == 2
    assert count(store, "SELECT count(*) FROM synth_functions WHERE merged_into IS NOT NULL") == 2
    members = {f.function_id for f in load_functions(store)}
    assert twice_b.function_id not in members and twice_a.function_id in members
    # the merged functions' seeds count for their members: seed-1 used percent_of and twice
    assert load_uses(store)["seed-1"] == {percent_of.function_id, twice_a.function_id}
    assert load_uses(store)["seed-2"] == {twice_a.function_id}
    assert merge_identical(store, "r2") == []      # idempotent


def test_behavioural_merge_needs_equal_outputs(store, pool):
    install_starter(store)
    commuted = llm_function('def times(x: float, y: float) -> float:\n    """Times."""\n    return y * x\n',
                            "times", NUM)
    near_miss = llm_function('def almost(x: float, y: float) -> float:\n    """Almost."""\n    return x * y + 1\n',
                             "almost", NUM)
    add_functions(store, [commuted, near_miss], [], run_id="r1")
    assert merge_identical(store) == []            # different ASTs
    merges = merge_equivalent(store, "r1", pool=pool)
    merged = {m.merged_id: m for m in merges}
    assert commuted.function_id in merged and near_miss.function_id not in merged
    assert all(m.merged_id not in {f.function_id for f in starter_functions()} for m in merges)
    details = merged[commuted.function_id].details
    assert len(details["inputs"]) == 8 and details["outputs"] == [x * y for x, y in details["inputs"]]
    kept = next(f for f in load_functions(store, members_only=False) if f.function_id == merged[commuted.function_id].kept_id)
    assert kept.origin == "starter" and [p.kind for p in kept.params] == ["num", "num"]
    assert count(store, "SELECT count(*) FROM synth_merges WHERE method = 'behaviour'") == len(merges)


# -- the graph and sampling ------------------------------------------------------------------------


def small_library() -> tuple[list[LibraryFunction], dict[str, set[str]]]:
    functions = [llm_function(f"def f{i}(x: float) -> float:\n    return x + {i}\n", f"f{i}", NUM[:1],
                              topic=["alpha", "beta", "gamma"][i % 3]) for i in range(12)]
    ids = [f.function_id for f in functions]
    uses = {"s1": {ids[0], ids[1], ids[2]}, "s2": {ids[0], ids[1]}, "s3": {ids[2], ids[3]}, "s4": {ids[4], ids[5]},
            "s5": {ids[6], ids[7], ids[8], ids[9]}}
    return functions, uses


def test_graph_edges_count_cooccurrences_and_topics():
    functions, uses = small_library()
    graph = build_graph(functions, uses)
    ids = [f.function_id for f in functions]
    assert graph.edges[ids[0], ids[1]]["cooccurrence"] == 2          # s1 and s2
    assert graph.edges[ids[2], ids[3]]["cooccurrence"] == 1
    assert graph.edges[ids[0], ids[3]]["same_topic"] and graph.edges[ids[0], ids[3]]["cooccurrence"] == 0
    assert not graph.has_edge(ids[0], ids[4])                         # no seed, different topics
    co = cooccurrence_view(graph)
    assert co.number_of_edges() == 3 + 1 + 1 + 6
    assert sorted(len(c) for c in nx.connected_components(co)) == [1, 1, 2, 4, 4]


def test_cooccurrence_walk_follows_edges_and_pads_small_components():
    functions, uses = small_library()
    graph = build_graph(functions, uses)
    co = cooccurrence_view(graph)
    rng = random.Random(1)
    padded = 0
    for _ in range(300):
        sampled = sample_functions(graph, 3, "cooccurrence", rng)
        assert len(set(sampled.ids)) == 3
        walk = sampled.details["walk"]
        assert all(co.has_edge(a, b) for a, b in pairwise(walk))   # every step is along an edge
        if sampled.details.get("padded"):
            padded += 1
            assert len(nx.node_connected_component(co, walk[0])) < 3     # padding only when the walk is stuck
        else:
            assert nx.is_connected(co.subgraph(sampled.ids))
    assert 0 < padded < 300


def test_walk_prefers_heavier_edges():
    functions, uses = small_library()
    graph = build_graph(functions, uses)
    ids = [f.function_id for f in functions]
    rng = random.Random(2)
    second = Counter()
    for _ in range(3000):
        sampled = sample_functions(graph, 2, "cooccurrence", rng)
        if sampled.ids[0] == ids[0]:
            second[sampled.ids[1]] += 1
    # from f0: f1 (weight 2) twice as likely as f2 (weight 1)
    assert 1.6 < second[ids[1]] / second[ids[2]] < 2.5


def test_topic_and_edgeless_strategies():
    functions, uses = small_library()
    graph = build_graph(functions, uses)
    rng = random.Random(3)
    for _ in range(100):
        sampled = sample_functions(graph, 3, "topic", rng)
        assert len({graph.nodes[i]["topic"] for i in sampled.ids}) == 1 == len({sampled.details["topic"]})
    picks = Counter(i for _ in range(1200) for i in sample_functions(graph, 2, "edgeless", rng).ids)
    assert set(picks) == set(graph.nodes) and max(picks.values()) / min(picks.values()) < 1.5
    too_many = sample_functions(graph, 5, "topic", rng)     # no topic has 5 functions: padded, and says so
    assert len(set(too_many.ids)) == 5 and "fallback" in too_many.details
    assert sample_functions(graph, 3, "edgeless", random.Random(9)).ids == \
        sample_functions(graph, 3, "edgeless", random.Random(9)).ids
    with pytest.raises(ValueError, match="strategy"):
        sample_functions(graph, 2, "nearest", rng)
    with pytest.raises(ValueError, match="library of 12"):
        sample_functions(graph, 13, "edgeless", rng)


def test_library_stats_and_cli(store, cli):
    out = cli("synth", "library", "--starter").stdout
    assert f"{len(starter.STARTER)} functions added" in out and "co-occurrence" in out
    stats = library_stats(store)
    assert stats["functions"] == len(starter.STARTER) and stats["origins"] == {"starter": len(starter.STARTER)}
    assert set(stats["topics"]) == set(starter.TOPICS)
    graph = load_graph(store)
    assert stats["cooccurrence_edges"] == cooccurrence_view(graph).number_of_edges() > 0
    assert stats["topic_edges"] == sum(v * (v - 1) // 2 for v in Counter(f.topic for f in starter_functions()).values())
    again = cli("synth", "library", "--starter", "--stats").stdout
    assert "0 functions added" in again and "algebra" in again
