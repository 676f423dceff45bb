"""`synth generate`: the no-LLM path end to end, each stage's logic, and the rejections."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from fractions import Fraction

import pytest

from curate.answers import answers_match, last_boxed
from curate.synth import starter
from curate.synth.backtranslate import check_problem, template_problem, trace_solution
from curate.synth.compose import Composition, Const, Ref, Step, TypedComposer, accepts, parse_solution
from curate.synth.generate import Synthesiser
from curate.synth.library import LibraryFunction, Param, add_functions, starter_functions
from curate.synth.sandbox import Opaque
from curate.synth.values import Answer, answer_of, format_number
from curate.synth.verify import final_answer
from tests.conftest import count
from tests.test_synth_support import Scripted, only, rows, sandbox_pool

pool = pytest.fixture(scope="module", name="pool")(sandbox_pool)


# -- end to end without an LLM ---------------------------------------------------------------------


def test_500_problems_without_llm_reexecute_to_their_answers(store, cli, pool):
    out = cli("synth", "generate", "--n", "500", "--no-llm", "--k", "1..4", "--seed", "7").stdout
    run_id = out.strip().splitlines()[-1]
    assert re.fullmatch(r"generate-[0-9a-f]{10}", run_id)
    kept = rows(store, "SELECT * FROM synth_problems WHERE run_id = ? AND status = 'kept' ORDER BY attempt", [run_id])
    assert len(kept) == 500
    # every stored answer equals a fresh re-execution of the stored code
    results = pool.map([p["code"] for p in kept])
    for problem, result in zip(kept, results):
        assert result.ok, result.error
        assert answer_of(result.value).text == problem["answer"]
        assert last_boxed(problem["solution"]) == problem["answer"]
        assert "def " not in problem["problem"] and "solution" not in problem["problem"]
        assert problem["problem"].count("?") == 1
        trace = json.loads(problem["trace"])
        assert [s["function"] for s in trace if s["depth"] == 0] == \
            re.findall(r"= (\w+)\(", problem["code"].split("def solution():")[1])
    assert Counter(p["k"] for p in kept).keys() == {1, 2, 3, 4}
    # the samples: one per kept problem, with gold answer and provenance back to the attempt
    samples = rows(store, """
        SELECT s.sample_id, s.kind, s.prompt, s.response, s.gold_answer, ss.row_number, p.answer, p.problem,
               p.solution, s.meta
        FROM samples s JOIN sample_sources ss USING (sample_id) JOIN synth_problems p
             ON p.run_id = ss.source_id AND p.attempt = ss.row_number
        WHERE ss.source_id = ?""", [run_id])
    assert len(samples) == 500 and {s["kind"] for s in samples} == {"synthetic"}
    assert all(s["gold_answer"] == s["answer"] and s["prompt"] == s["problem"] and s["response"] == s["solution"]
               for s in samples)
    assert all(json.loads(s["meta"])["rvsyn"]["run_id"] == run_id for s in samples)
    assert count(store, "SELECT count(*) FROM labels WHERE origin = 'rvsyn'") > 500
    # rejections: printed, stored per attempt and in the run's counts
    run = rows(store, "SELECT status, counts FROM runs WHERE run_id = ?", [run_id])[0]
    counts = json.loads(run["counts"])
    stored = {r["reason"]: r["attempts"] for r in rows(store, "SELECT * FROM synth_rejections WHERE run_id = ?",
                                                       [run_id])}
    assert run["status"] == "completed" and counts["kept"] == 500 and counts["rejected"] == stored
    assert counts["attempts"] == 500 + sum(stored.values())
    for reason, n in stored.items():
        assert re.search(rf"{reason}\s+.\s+{n}\b", out)
    source = rows(store, "SELECT * FROM sources WHERE source_id = ?", [run_id])[0]
    assert (source["name"], source["dialect"], source["status"], source["rows_new"]) == ("rvsyn", "rvsyn", "complete", 500)
    # any selector applies: the synthetic samples are ordinary samples
    picked = cli("select", "random", "--budget", "10", "--where", "kind = 'synthetic'").stdout.strip().splitlines()[-1]
    assert count(store, "SELECT count(*) FROM selections WHERE run_id = ? AND selected", [picked]) == 10


def test_same_seed_same_problems(tmp_path, pool):
    from curate.store import Store

    texts = []
    for name in ("a", "b"):
        store = Store(tmp_path / f"{name}.duckdb")
        Synthesiser(15, seed=4, strategy="topic", batch_size=8 if name == "a" else 64).run(store, pool=pool)
        texts.append([r["problem"] for r in rows(store, "SELECT problem FROM synth_problems ORDER BY attempt")])
    assert texts[0] == texts[1] and len(set(texts[0])) == len(texts[0])


def test_rejections_are_counted_by_reason(store, pool):
    p = [Param("x", "int", 1, 3, 1)]
    bad = {
        "boom": "def boom(x: int) -> int:\n    return x // 0\n",
        "huge": "def huge(x: int) -> int:\n    return 10 ** (x * 50)\n",
        "nothing": "def nothing(x: int) -> int:\n    return None\n",
        "nan": "def nan(x: int) -> int:\n    return float('nan')\n",
        "imag": "def imag(x: int) -> int:\n    return complex(0, x)\n",
        "text": "def text(x: int) -> int:\n    return 'seven'\n",
        "spin": "def spin(x: int) -> int:\n    while True:\n        x += 1\n",
        "escape": "def escape(x: int) -> int:\n    return open('/etc/passwd').read()\n",
    }
    functions = [LibraryFunction(name=n, code=c, params=p, returns="int", doc="Bad.", topic="arithmetic",
                                 origin="llm") for n, c in bad.items()]
    add_functions(store, functions, [], run_id=None)
    report = Synthesiser(1, k=(1, 1), origin="llm", strategy="edgeless", max_attempts=40, timeout=0.5).run(store, pool=pool)
    assert report.kept == 0 and report.attempts == 40
    assert set(report.rejected) == {"exception", "huge", "none", "non_finite", "complex", "non_numeric", "timeout",
                                    "invalid_code"}
    by_function = {json.loads(r["functions"])[0]: (r["reason"], r["stage"], r["error"])
                   for r in rows(store, "SELECT * FROM synth_problems")}
    ids = {f.name: f.function_id for f in functions}
    assert by_function[ids["boom"]][:2] == ("exception", "execute") and "ZeroDivisionError" in by_function[ids["boom"]][2]
    assert by_function[ids["escape"]][0] == "invalid_code" and "'open'" in by_function[ids["escape"]][2]
    assert by_function[ids["spin"]][0] == "timeout"
    assert count(store, "SELECT count(*) FROM samples") == 0


def test_empty_library_gets_the_starter_and_bad_options_are_clear(store, cli):
    result = cli("synth", "generate", "--n", "2", "--no-llm", "--strategy", "nearest", expect=1)
    assert "--strategy 'nearest'" in result.stderr
    assert "between 1 and 4" in cli("synth", "generate", "--n", "2", "--no-llm", "--k", "9", expect=1).stderr
    assert "expected a number or a range" in cli("synth", "generate", "--n", "2", "--no-llm", "--k", "x", expect=1).stderr
    cli("synth", "generate", "--n", "2", "--no-llm", "--k", "2")
    assert count(store, "SELECT count(*) FROM synth_functions WHERE origin = 'starter'") == len(starter.STARTER)


# -- the stages ----------------------------------------------------------------------------------


def by_name(*names: str) -> list[LibraryFunction]:
    functions = {f.name: f for f in starter_functions()}
    return [functions[n] for n in names]


def test_typed_composer_wires_by_kind_into_one_result():
    rng = random.Random(0)
    library = starter_functions()
    for _ in range(300):
        chosen = rng.sample(library, rng.randint(1, 4))
        composed = TypedComposer().compose(chosen, rng)
        if isinstance(composed, str):
            assert composed == "uncomposable"
            continue
        assert sorted(s.function.name for s in composed.steps) == sorted(f.name for f in chosen)
        used = Counter()
        for index, step in enumerate(composed.steps):
            assert list(step.inputs) == [p.name for p in step.function.params]
            for param in step.function.params:
                value = step.inputs[param.name]
                if isinstance(value, Ref):
                    assert value.step < index and accepts(param.kind, composed.steps[value.step].function.returns)
                    used[value.step] += 1
                else:
                    assert param.lo <= value.value <= param.hi
                    assert isinstance(value.value, int) or param.kind == "num"
        # every result but the last is used exactly once; the last is the answer
        assert used == Counter(range(len(composed.steps) - 1))


def test_composer_refuses_what_cannot_be_wired():
    # int-only consumers with real results: neither can take the other's result, in either order
    def needs_int(name: str) -> LibraryFunction:
        return LibraryFunction(name=name, code=f"def {name}(n: int) -> float:\n    return n / 2\n",
                               params=[Param("n", "int", 1, 5, 1)], returns="num", origin="llm")

    assert TypedComposer().compose([needs_int("f"), needs_int("g")], random.Random(0)) == "uncomposable"
    assert not isinstance(TypedComposer().compose([needs_int("f"), by_name("circle_area")[0]], random.Random(0)), str)
    untyped = LibraryFunction(name="g", code="def g(x):\n    return x\n", params=[Param("x")], origin="llm")
    assert TypedComposer().compose([untyped], random.Random(0)) == "untyped"


def test_template_problem_and_trace_solution(pool):
    percent_of, choose = by_name("percent_of", "choose")
    composition = Composition([Step(percent_of, "percent_of", {"percent": Const(15), "whole": Const(240)}),
                               Step(choose, "choose", {"n": Ref(0), "k": Const(3)})])
    assert composition.solution() == ("def solution():\n    step1 = percent_of(percent=15, whole=240)\n"
                                      "    step2 = choose(n=step1, k=3)\n    return step2\n")
    result = pool.execute(composition.program())
    # 15% of 240 is the float 36.0, which math.comb refuses: a rejection, not a wrong answer
    assert not result.ok and result.exception == "TypeError"
    dozens, handshakes = by_name("dozens_to_items", "handshakes")
    composition = Composition([Step(dozens, "dozens_to_items", {"dozens": Const(2)}),
                               Step(handshakes, "handshakes", {"people": Ref(0)})])
    result = pool.execute(composition.program())
    answer = answer_of(result.value)
    assert answer == Answer("276", 276, False)
    assert template_problem(composition, answer) == (
        "Let A be the number of items in 2 dozen. What is the number of handshakes when each of A people shakes "
        "hands once with every other person?")
    assert trace_solution(composition, result.trace, answer) == (
        "Step 1: A is the number of items in 2 dozen, which is 24.\n"
        "Step 2: The number of handshakes when each of 24 people shakes hands once with every other person is 276.\n"
        "The answer is \\boxed{276}.")


def test_answer_of_and_format_number():
    assert answer_of(7) == Answer("7", 7, False)
    assert answer_of(12.0).text == "12" and answer_of(0.1 + 0.2) == Answer("0.3", 0.1 + 0.2, False)
    assert answer_of(100 / 3) == Answer("33.33", 100 / 3, True)
    assert answer_of(Fraction(7, 4)).text == "7/4" and answers_match("7/4", "1.75")
    assert [answer_of(v) for v in (None, 1j, float("inf"), 10**12, "x", True, [1], Opaque("int", "huge"))] == \
        ["none", "complex", "non_finite", "huge", "non_numeric", "non_numeric", "non_numeric", "huge"]
    assert format_number(2.5) == "2.5" and format_number(Fraction(3, 1)) == "3" and format_number(-0.00001) == "0"


# -- the LLM stages' logic, pinned with a scripted model ------------------------------------------------


def test_llm_path_keeps_verified_problems_and_records_the_solve_rate(store, pool):
    only(store, "dozens_to_items", "handshakes")

    def reply(prompt: str, n: int) -> list[str]:
        if "Write one Python function `solution()`" in prompt:
            return [("```python\ndef solution():\n    items = dozens_to_items(dozens=3)\n"
                     "    return handshakes(people=items)\n```")]
        if "Write a math word problem" in prompt:
            return [("Problem: A club orders 3 dozen badges, one per member. If every member shakes hands "
                     "once with every other member, how many handshakes are there?")]
        # the solver: right half of the time
        return ["36 members, so 36 * 35 / 2 = 630. \\boxed{630}", "I think \\boxed{600}"] * (n // 2)

    backend = Scripted(reply)
    synthesiser = Synthesiser(1, k=(2, 2), backend=backend, verify_samples=4, strategy="cooccurrence")
    report = synthesiser.run(store, pool=pool)
    assert report.kept == 1
    problem = rows(store, "SELECT * FROM synth_problems WHERE status = 'kept'")[0]
    assert problem["answer"] == "630" and problem["solve_rate"] == 0.5
    assert problem["solution"].endswith("\\boxed{630}") and problem["problem"].startswith("A club orders")
    verification = json.loads(problem["verification"])
    assert verification["answers"] == ["630", "600", "630", "600"] and verification["matches"] == [True, False] * 2
    assert json.loads(problem["responses"])["compose"].startswith("```python")
    assert count(store, "SELECT count(*) FROM scores WHERE scorer = 'rvsyn_solve_rate' AND value = 0.5") == 1
    assert any("3 dozen badges" in p for p in backend.prompts)      # the verifier saw the problem


@pytest.mark.parametrize("reply, stage, reason", [
    ("no code here", "compose", "no_code"),
    ("```python\ndef solution():\n    return dozens_to_items(dozens=3)\n```", "compose", "missing_functions"),
    ("```python\ndef solution():\n    a = dozens_to_items(dozens=3)\n    return handshakes(people=4) + a\n```",
     "compose", "not_composed"),
    ("PROBLEM_CODE", "backtranslate", "mentions_code"),
    ("PROBLEM_MISSING", "backtranslate", "missing_inputs"),
    ("PROBLEM_TWO", "backtranslate", "not_one_question"),
    ("PROBLEM_LEAK", "backtranslate", "answer_leaked"),
    ("PROBLEM_OK", "verify", "unverified"),
])
def test_llm_path_rejections(store, pool, reply, stage, reason):
    problems = {
        "PROBLEM_CODE": "Call handshakes_count(36) with dozens_to_items(3)?",
        "PROBLEM_MISSING": "A club has some dozens of members. How many handshakes are there?",
        "PROBLEM_TWO": "A club has 3 dozen members. Who? How many handshakes are there?",
        "PROBLEM_LEAK": "A club has 3 dozen members and 630 handshakes happen. How many handshakes are there?",
        "PROBLEM_OK": "A club has 3 dozen members. How many handshakes are there?",
    }
    compose = "```python\ndef solution():\n    return handshakes(people=dozens_to_items(dozens=3))\n```"

    def answer(prompt: str, n: int) -> list[str]:
        if "Write one Python function `solution()`" in prompt:
            return [reply if stage == "compose" else compose]
        if "Write a math word problem" in prompt:
            return [problems[reply]]
        return ["\\boxed{12}"] * n

    only(store, "dozens_to_items", "handshakes")
    report = Synthesiser(1, k=(2, 2), backend=Scripted(answer), max_attempts=1, verify_samples=2).run(store, pool=pool)
    assert report.rejected == Counter({reason: 1})
    row = rows(store, "SELECT stage, reason, error FROM synth_problems")[0]
    assert (row["stage"], row["reason"]) == (stage, reason) and row["error"]


def test_parse_solution_and_check_problem_units():
    solution, reason, _ = parse_solution("Sure!\n```python\ndef helper():\n    pass\n\ndef solution():\n"
                                         "    return g(f(2))\n```", ["f", "g"])
    assert reason is None and solution == "def solution():\n    return g(f(2))\n"
    assert parse_solution("```python\ndef solution(x):\n    return f(x)\n```", ["f"])[1] == "no_solution"
    answer = Answer("45", 45, False)
    ok = check_problem("**Problem:** Tom buys 3 boxes of 15 pens. How many pens?\n\nSolution: 45", [3, 15], answer, [])
    assert ok == ("Tom buys 3 boxes of 15 pens. How many pens?", None, None)
    assert check_problem("Tom buys three boxes of fifteen pens. How many pens?", [3, 15], answer, [])[1] is None
    assert check_problem("Tom buys three boxes of sixteen pens. How many pens?", [3, 15], answer, [])[1] == \
        "missing_inputs"
    assert check_problem("A 0.15 rate as 15% of 200. What is it?", [0.15, 200], Answer("30", 30, False), [])[1] is None
    assert final_answer("so the total is 1,234 dollars.") == "1234"
    assert final_answer("The answer is: $42.") == "42" and final_answer("#### 7") == "7"
    assert final_answer("x \\boxed{\\frac{1}{2}} then 9") == "\\frac{1}{2}" and final_answer("none") is None
