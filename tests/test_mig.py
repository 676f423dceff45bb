"""MIG: the method against an independent computation from the paper's formulas, its properties,
and the fast mode against the dense (reference-arithmetic) mode."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curate.errors import CurateError
from curate.ingest import ingest
from curate.labels.graph import similarity_graph
from curate.models.embed import encode_texts
from curate.selectors import Pool, run_selection
from curate.selectors.mig import (
    MIGSelector,
    Phi,
    compare_orders,
    greedy_dense,
    greedy_fast,
    propagation_matrix,
    sample_vectors,
)
from tests.conftest import count, write_jsonl

# yichengchen24/MIG @ 969eb53 run on ../shared/data/mig/example.jsonl (`mig sample -n 8`, embedding
# model all-MiniLM-L6-v2, valid_tags.json, defaults otherwise; -n 9 makes the reference itself fail
# on its last pick): the `_id`s in order, without and with --norm.
REFERENCE_EXAMPLE = ["eb9db450f0a4489e91d72ec2", "1ae4febebd26c61d089c173b", "73ec445972636ce6ce0b6db7",
                     "15519282bc0e501d17a901e7", "09968d11fd5b70c445cf361e", "b5d381f5272b0bc4cdc5d2d7",
                     "73be717f9697e5a983fe5b8b", "ef5185c63874029d432387f4"]
REFERENCE_EXAMPLE_NORM = ["73ec445972636ce6ce0b6db7", "15519282bc0e501d17a901e7", "ef5185c63874029d432387f4",
                          "eb9db450f0a4489e91d72ec2", "1ae4febebd26c61d089c173b", "09968d11fd5b70c445cf361e",
                          "b5d381f5272b0bc4cdc5d2d7", "73be717f9697e5a983fe5b8b"]


# -- an independent computation, written from the paper's formulas in plain float64 numpy ------------

def paper_mig(tag_lists, scores, budget, *, tau=0.9, omega=1.0, norm=False, a=1e-6, b=0.8, vectors=None):
    """Greedy MIG order (first index on ties) and the gain of each pick."""
    labels = sorted({t for tags in tag_lists for t in tags})
    index = {label: j for j, label in enumerate(labels)}
    e = encode_texts(labels).astype(np.float64) if vectors is None else vectors
    w = e @ e.T
    w[w < tau] = 0.0
    p = np.diag(np.diag(w)) + omega * (w - np.diag(np.diag(w)))
    p = p / p.sum(axis=0, keepdims=True)
    v = np.zeros((len(tag_lists), len(labels)))
    for i, tags in enumerate(tag_lists):
        for t in tags:
            v[i, index[t]] = scores[i] / len(tags) if norm else scores[i]
    m = v @ p
    x, order, gains = np.zeros(len(labels)), [], []
    for _ in range(min(budget, len(tag_lists))):
        g = m @ (b * (x + a) ** (b - 1))
        g[order] = -np.inf
        i = int(np.flatnonzero(g >= g.max() * (1 - 1e-12))[0])   # the first of the (exactly) tied best
        order.append(i)
        gains.append(g[i])
        x += m[i]
    return order, gains


def read_mig_pool(path, vocab=None):
    """(ids, tag lists, DEITA scores) of a mig-pool file's good rows, as MIG's data.py reads them."""
    ids, tags, scores = [], [], []
    for line in open(path, encoding="utf-8"):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        deita = record["annotation"]["deita"]
        products = [q * c for q, c in zip(deita["quality_scores"], deita["complexity_scores"])]
        ids.append(record["_id"])
        tags.append([t for t in record["annotation"]["instag"]["content"] if vocab is None or t in vocab])
        scores.append(sum(products) / len(products))
    return ids, tags, scores


def selected_meta_ids(store, run_id):
    with store.connect() as con:
        return [r[0] for r in con.execute(
            "SELECT m.meta->>'_id' FROM selections s JOIN samples m USING (sample_id) "
            "WHERE s.run_id = ? AND s.selected ORDER BY s.rank", [run_id]).fetchall()]


# -- MIG's real example ----------------------------------------------------------------------------

def test_example_with_defaults_matches_the_paper(cli, store, shared_data):
    example = shared_data / "mig" / "example.jsonl"
    cli("ingest", example, "--dialect", "mig-pool")
    run_id = cli("select", "mig", "--budget", 9).stdout.strip().splitlines()[-1]
    ids, tags, _ = read_mig_pool(example)
    order, gains = paper_mig(tags, [1.0] * len(ids), 9)   # defaults: no vocabulary, every sample weighs 1
    assert selected_meta_ids(store, run_id) == [ids[i] for i in order]
    with store.connect() as con:
        recorded = [r[0] for r in con.execute("SELECT score FROM selections WHERE run_id = ? AND selected "
                                              "ORDER BY rank", [run_id]).fetchall()]
        params = json.loads(con.execute("SELECT params FROM runs WHERE run_id = ?", [run_id]).fetchone()[0])
    np.testing.assert_allclose(recorded, gains, rtol=1e-6)
    assert params["budget"] == 9 and params["sim_threshold"] == 0.9 and params["phi_b"] == 0.8
    assert {"label_origin", "label_vocab", "label_model", "prop_weight", "quality_score", "norm", "phi", "phi_a",
            "phi_alpha", "gain", "impl"} <= set(params)


@pytest.mark.parametrize("norm", [False, True])
def test_example_as_the_reference_runs_it(cli, store, shared_data, norm):
    example, vocab = shared_data / "mig" / "example.jsonl", shared_data / "mig" / "valid_tags.json"
    cli("ingest", example, "--dialect", "mig-pool")
    ids, tags, scores = read_mig_pool(example, set(json.loads(vocab.read_text())))
    expected, _ = paper_mig(tags, scores, 8, norm=norm)
    for impl in ("fast", "dense"):
        args = ["select", "mig", "-n", 8, "--quality-score", "deita", "--label-vocab", vocab, "--impl", impl]
        run_id = cli(*args, *(["--norm"] if norm else [])).stdout.strip().splitlines()[-1]
        got = selected_meta_ids(store, run_id)
        assert got == [ids[i] for i in expected]
        assert got == (REFERENCE_EXAMPLE_NORM if norm else REFERENCE_EXAMPLE)


def test_unseen_mig_pool_follows_the_reference_rule(cli, store, tmp_path, shared_data):
    """A mig-pool file the code never saw: invalid tags, rounded scores (exact ties), a near-duplicate tag
    set, a row without annotation; a threshold low enough for a connected graph."""
    vocab = json.loads((shared_data / "mig" / "valid_tags.json").read_text())
    rng = np.random.default_rng(5)
    common = vocab[:40]
    records = []
    for i in range(160):
        tags = list(dict.fromkeys(rng.choice(common, size=rng.integers(1, 5)).tolist()))
        if i % 7 == 0:
            tags.append(f"not a valid tag {i % 3}")
        q, c = rng.integers(1, 6, size=2).tolist() if i % 2 else rng.uniform(1, 6, size=2).round(3).tolist()
        records.append({"_id": f"u{i}", "dialogs": [{"role": "user", "content": f"task {i}"},
                                                    {"role": "assistant", "content": f"done {i}"}],
                        "annotation": {"instag": {"content": tags},
                                       "deita": {"quality_scores": [q], "complexity_scores": [c]}}})
    path = write_jsonl(tmp_path / "unseen.jsonl", records)
    cli("ingest", path, "--dialect", "mig-pool")
    vocab_path = shared_data / "mig" / "valid_tags.json"
    ids, tags, scores = read_mig_pool(path, set(vocab))
    expected, _ = paper_mig(tags, scores, 60, tau=0.5)
    run_id = cli("select", "mig", "-n", 60, "--quality-score", "deita", "--label-vocab", vocab_path,
                 "--sim-threshold", 0.5).stdout.strip().splitlines()[-1]
    assert selected_meta_ids(store, run_id) == [ids[i] for i in expected]
    with store.connect() as con:
        edges = json.loads(con.execute("SELECT counts FROM runs WHERE run_id = ?", [run_id]).fetchone()[0])["edges"]
    assert edges > 10    # the propagation matters in this pool


# -- the rule's details: ties, drops, records, errors -----------------------------------------------

def _pool(store, tmp_path, records, name="pool.jsonl"):
    ingest(store, [str(write_jsonl(tmp_path / name, records))], dialect="mig-pool")
    return Pool.from_store(store)


def _record(i, tags, quality=2.0, complexity=3.0, annotate=True):
    record = {"_id": f"r{i}", "dialogs": [{"role": "user", "content": f"prompt {i}"},
                                          {"role": "assistant", "content": f"reply {i}"}]}
    if annotate:
        record["annotation"] = {"instag": {"content": tags},
                                "deita": {"quality_scores": [quality], "complexity_scores": [complexity]}}
    return record


def test_ties_go_to_the_first_sample_in_input_order(store, tmp_path):
    # identical tags and scores: every gain ties; the reference picks in file order, not id order
    records = [_record(i, ["mathematics"]) for i in range(6)]
    pool = _pool(store, tmp_path, records)
    with store.connect() as con:
        file_order = [r[0] for r in con.execute("SELECT sample_id FROM sample_sources ORDER BY row_number").fetchall()]
    assert file_order != sorted(file_order)
    for impl in ("fast", "dense"):
        run_id = run_selection(store, MIGSelector(impl=impl), pool, 6)
        with store.connect() as con:
            picked = [r[0] for r in con.execute("SELECT sample_id FROM selections WHERE run_id = ? ORDER BY rank",
                                                [run_id]).fetchall()]
        assert picked == file_order


def test_records_gains_ranks_and_drops(store, tmp_path):
    records = [_record(0, ["mathematics", "algebra"], 5, 4), _record(1, ["cooking"], 3, 3),
               _record(2, ["mathematics"], 4, 4), _record(3, [], annotate=False)]
    pool = _pool(store, tmp_path, records)
    with store.transaction() as con:   # one sample loses its score: dropped, not weighted by a default
        con.execute("DELETE FROM scores WHERE sample_id = (SELECT sample_id FROM samples WHERE meta->>'_id' = 'r1')")
    run_id = run_selection(store, MIGSelector(quality_score="deita"), pool, 5)
    with store.connect() as con:
        rows = con.execute("SELECT m.meta->>'_id', s.selected, s.rank, s.score, s.reason, s.details FROM selections s "
                           "JOIN samples m USING (sample_id) WHERE run_id = ? ORDER BY s.rank NULLS LAST, 1",
                           [run_id]).fetchall()
        counts = json.loads(con.execute("SELECT counts FROM runs WHERE run_id = ?", [run_id]).fetchone()[0])
    kept = [r for r in rows if r[1]]
    assert [r[0] for r in kept] == ["r0", "r2"] and [r[2] for r in kept] == [1, 2]
    assert kept[0][3] > kept[1][3] > 0
    assert json.loads(kept[0][5]) == {"quality": 20.0, "labels": ["algebra", "mathematics"]}
    assert {(r[0], r[4]) for r in rows if not r[1]} == {("r1", "no 'deita' score"), ("r3", "no labels")}
    assert counts["candidates"] == 2 and counts["lazy"] is True


def test_parameters_are_checked(store, tmp_path, shared_data):
    pool = _pool(store, tmp_path, [_record(0, ["mathematics"])])
    with pytest.raises(CurateError, match="no pool sample has a 'quality' score"):
        MIGSelector(quality_score="quality").select(pool, 1)
    with pytest.raises(CurateError, match="no pool sample has labels of origin 'llm'"):
        MIGSelector(label_origin="llm").select(pool, 1)
    with pytest.raises(CurateError, match="--phi-a 0"):
        MIGSelector(phi_a=0).select(pool, 1)
    with pytest.raises(CurateError, match="'mathematics' has no edge, not even its self-loop"):
        MIGSelector(sim_threshold=1.5).select(pool, 1)
    bad = tmp_path / "bad_vocab.json"
    bad.write_text('["math", 3]')
    with pytest.raises(CurateError, match=r"bad_vocab.json: entry \[1\] is 3"):
        MIGSelector(label_vocab=str(bad)).select(pool, 1)


def test_cli_flags_reach_the_selector(cli, store, tmp_path):
    _pool(store, tmp_path, [_record(i, ["mathematics", "cooking"][: 1 + i % 2], 2 + i, 3) for i in range(5)])
    out = cli("select", "mig", "-n", 3, "--quality-score", "deita", "--norm", "--phi", "exp", "--phi-alpha", 0.5,
              "--gain", "exact", "--impl", "dense", "--sim-threshold", 0.5, "--prop-weight", 0.3).stdout
    run_id = out.strip().splitlines()[-1]
    with store.connect() as con:
        params = json.loads(con.execute("SELECT params FROM runs WHERE run_id = ?", [run_id]).fetchone()[0])
    assert {k: params[k] for k in ("norm", "phi", "phi_alpha", "gain", "impl", "sim_threshold", "prop_weight",
                                   "quality_score", "budget")} == {
        "norm": True, "phi": "exp", "phi_alpha": 0.5, "gain": "exact", "impl": "dense", "sim_threshold": 0.5,
        "prop_weight": 0.3, "quality_score": "deita", "budget": 3}
    assert count(store, "SELECT count(*) FROM selections WHERE run_id = ? AND selected", [run_id]) == 3
    assert "5 candidates" in out


# -- properties on random pools ---------------------------------------------------------------------

PHIS = [Phi("pow", 1e-6, 0.8), Phi("pow", 0.5, 0.3), Phi("pow", 1e-6, 1.0), Phi("exp", alpha=0.05),
        Phi("exp", alpha=1.0)]


@st.composite
def random_pools(draw, max_samples=40, max_labels=12):
    """(V, W, prop_weight) of a random pool: skewed label frequencies, empty samples, tied scores."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n, n_labels = draw(st.integers(1, max_samples)), draw(st.integers(1, max_labels))
    vectors = rng.normal(size=(n_labels, draw(st.integers(2, 5))))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    graph = similarity_graph([f"l{j}" for j in range(n_labels)], draw(st.floats(0.2, 0.99)), vectors=vectors)
    popularity = 1.0 / np.arange(1, n_labels + 1) ** draw(st.floats(0, 1.5))
    rows, cols = [], []
    for i in range(n):
        k = int(rng.integers(0 if draw(st.booleans()) else 1, min(n_labels, 5) + 1))
        chosen = rng.choice(n_labels, size=k, replace=False, p=popularity / popularity.sum())
        rows += [i] * k
        cols += chosen.tolist()
    kind = draw(st.sampled_from(["ones", "few", "floats"]))
    scores = {"ones": np.ones(n), "few": rng.integers(1, 4, n).astype(float), "floats": rng.uniform(1, 36, n)}[kind]
    v = sample_vectors(np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64), scores, n_labels,
                       draw(st.booleans()))
    return v, graph.weights, draw(st.sampled_from([1.0, 0.5, 0.0, 2.0]))


def objective(m: np.ndarray, members, phi: Phi) -> float:
    return float(phi.value(m[list(members)].sum(axis=0)).sum()) if members else float(phi.value(np.zeros(m.shape[1])).sum())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_pools(), st.sampled_from(PHIS), st.data())
def test_information_is_monotone_and_submodular(pool, phi, data):
    v, w, omega = pool
    m = (v @ propagation_matrix(w, omega)).toarray()
    n = m.shape[0]
    small = data.draw(st.sets(st.integers(0, n - 1), max_size=n))
    large = small | data.draw(st.sets(st.integers(0, n - 1), max_size=n))
    extra = data.draw(st.integers(0, n - 1))
    f_small, f_large = objective(m, small, phi), objective(m, large, phi)
    tolerance = 1e-9 * max(1.0, abs(f_large))
    assert f_small <= f_large + tolerance                                   # monotone
    if extra not in large:                                                  # diminishing returns
        assert (objective(m, small | {extra}, phi) - f_small
                >= objective(m, large | {extra}, phi) - f_large - tolerance)


def greedy_steps_are_maximal(v, p, phi, gain, order, rtol):
    """Check, in plain float64, that each pick's gain is the largest left (up to rtol)."""
    m = (v @ p).toarray()
    x, left = np.zeros(m.shape[1]), set(range(m.shape[0]))
    for picked in order:
        rows = np.asarray(sorted(left))
        if gain == "reference":
            gains = m[rows] @ phi.derivative(x)
        else:
            gains = (phi.value(x + m[rows]) - phi.value(x)).sum(axis=1)
        best = gains.max()
        assert gains[rows == picked][0] >= best - rtol * abs(best)
        x += m[picked]
        left.remove(picked)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_pools(), st.sampled_from(PHIS), st.sampled_from(["reference", "exact"]), st.data())
def test_fast_picks_what_dense_picks(pool, phi, gain, data):
    """fast (lazy) == fast (eager), exactly; fast == dense in float64 up to genuine ties; every fast
    pick is a greedy pick by an independent float64 computation."""
    v, w, omega = pool
    p = propagation_matrix(w, omega)
    budget = data.draw(st.integers(1, v.shape[0]))
    lazy = greedy_fast(v, p, phi, budget, gain)
    eager = greedy_fast(v, p, phi, budget, gain, lazy=False)
    assert lazy.lazy and lazy.order == eager.order and lazy.gains == eager.gains
    assert len(lazy.order) == budget == len(set(lazy.order))
    dense = greedy_dense(v, w, omega, phi, budget, gain, dtype="float64")
    comparison = compare_orders(dense.order, lazy.order, v, p, phi, gain, rtol=1e-6)
    assert comparison.equal_up_to_ties, comparison.describe()
    greedy_steps_are_maximal(v, p, phi, gain, lazy.order, rtol=1e-6)
    if gain == "reference" and phi.kind == "pow":
        # the reference's own float32 arithmetic (exp phi would underflow float32 into ties at 0)
        dense32 = greedy_dense(v, w, omega, phi, budget, gain)
        comparison = compare_orders(dense32.order, lazy.order, v, p, phi, gain, rtol=1e-5)
        assert comparison.equal_up_to_ties, comparison.describe()


@settings(max_examples=40, deadline=None)
@given(random_pools(max_samples=30), st.data())
def test_convex_phi_falls_back_to_eager(pool, data):
    # phi = x^1.5 is convex: gains grow, lazy bounds would be wrong; the fast mode evaluates eagerly
    v, w, omega = pool
    phi = Phi("pow", 1e-6, 1.5)
    p = propagation_matrix(w, omega)
    budget = data.draw(st.integers(1, v.shape[0]))
    fast = greedy_fast(v, p, phi, budget)
    assert not fast.lazy
    with pytest.raises(ValueError, match="lazy greedy is exact only"):
        greedy_fast(v, p, phi, budget, lazy=True)
    comparison = compare_orders(greedy_dense(v, w, omega, phi, budget, dtype="float64").order, fast.order, v, p, phi,
                                rtol=1e-6)
    assert comparison.equal_up_to_ties, comparison.describe()


def test_compare_orders_tells_ties_from_differences():
    # two samples on two isolated labels, the same weight: a tie; a third, lighter: no tie
    v = sample_vectors(np.array([0, 1, 2]), np.array([0, 1, 2]), np.array([2.0, 2.0, 1.0]), 3)
    w = similarity_graph(["a", "b", "c"], 0.9, vectors=np.eye(3)).weights
    p, phi = propagation_matrix(w, 1.0), Phi()
    assert compare_orders([0, 1, 2], [0, 1, 2], v, p, phi).equal
    swapped = compare_orders([0, 1, 2], [1, 0, 2], v, p, phi)
    assert swapped.swapped_ties == [0] and swapped.equal_up_to_ties and swapped.diverged_at is None
    wrong = compare_orders([0, 1, 2], [2, 0, 1], v, p, phi)
    assert wrong.diverged_at == 0 and not wrong.tie_at_divergence and not wrong.equal_up_to_ties
