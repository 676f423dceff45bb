"""The LLM paths: seed decomposition into library functions, and LLM composition, back-translation and
verification; their logic pinned with a scripted model, and each run through the real small model
(SmolLM2-135M), which may keep little but must run every step and record why each item was dropped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curate.ingest import ingest
from curate.synth.extract import LibraryBuilder, library_functions
from curate.synth.library import load_functions, load_uses
from tests.conftest import count
from tests.test_synth_support import Scripted, only, rows, sandbox_pool

pool = pytest.fixture(scope="module", name="pool")(sandbox_pool)


@pytest.fixture
def seeds(store, shared_data, tmp_path) -> list[str]:
    """The first 5 GSM8K training problems, ingested as source `gsm8k` (read in place, 5 lines copied to tmp)."""
    lines = (shared_data / "math" / "gsm8k_train.jsonl").read_text().splitlines()[:5]
    path = Path(tmp_path / "gsm8k_5.jsonl")
    path.write_text("\n".join(lines) + "\n")
    ingest(store, [str(path)], dialect="gsm8k", source="gsm8k")
    return [json.loads(line)["question"] for line in lines]


NATALIA = '''```python
def half(amount: float) -> float:
    """Half of an amount."""
    return amount / 2


def total(first: float, second: float) -> float:
    """Sum of two amounts."""
    return first + second


def solution():
    may = half(48)
    return total(48, may)
```'''

WENG_WRONG = '''```python
def per_minute(hourly: float) -> float:
    """Rate per minute."""
    return hourly / 60


def solution():
    return per_minute(12) * 60
```'''

BETTY_UNDOCUMENTED = '''```python
def need(price: float, have: float):
    return price - have


def give(x: float) -> float:
    """Twice a gift."""
    return x * 2


def remaining(price: float, have: float, parents: float) -> float:
    """What is still missing."""
    return price - have - parents - give(parents)


def solution():
    return remaining(100, 50, 15)
```'''


def scripted_decomposer(prompt: str, n: int = 1) -> list[str]:
    if "Natalia" in prompt:
        return [NATALIA]
    if "Weng" in prompt:
        return [WENG_WRONG]
    if "Betty" in prompt:
        return [BETTY_UNDOCUMENTED]
    if "Julie" in prompt:
        return [("```python\nimport os\ndef f(x: int) -> int:\n    \"\"\"X.\"\"\"\n    return x\n"
                 "def solution():\n    return os.getcwd()\n```")]
    return ["I cannot write code for this."]


def test_seed_decomposition_keeps_seeds_that_execute_to_gold(store, seeds, pool):
    report = LibraryBuilder(Scripted(scripted_decomposer)).run(store, "gsm8k", pool=pool)
    assert (report.seeds, report.kept) == (5, 2)
    outcome = {r["sample_id"]: r for r in rows(store, "SELECT * FROM synth_seeds WHERE run_id = ?", [report.run_id])}
    assert len(outcome) == 5
    reasons = sorted((r["status"], r["reason"]) for r in outcome.values())
    assert reasons == [("dropped", "answer_mismatch"), ("dropped", "forbidden"), ("dropped", "no_code"),
                       ("kept", None), ("kept", None)]
    mismatch = next(r for r in outcome.values() if r["reason"] == "answer_mismatch")
    assert mismatch["executed_answer"] == "12" and mismatch["gold_answer"] == "10" and "gold 10" in mismatch["error"]
    forbidden = next(r for r in outcome.values() if r["reason"] == "forbidden")
    assert "import of 'os'" in forbidden["error"]
    # Natalia's functions: typed, documented, self-contained; ranges from the values the seed used
    llm = {f.name: f for f in load_functions(store, origin="llm", members_only=False)}
    assert set(llm) == {"half", "total", "give"}            # not `need` (no docstring), not `remaining`
    # `total` is the starter `add` renamed: merged into it, and the merge recorded
    add = next(f for f in load_functions(store, origin="starter") if f.name == "add")
    assert llm["total"].merged_into == add.function_id
    assert count(store, "SELECT count(*) FROM synth_merges WHERE merged_id = ? AND method = 'ast'",
                 [llm["total"].function_id]) == 1
    half = llm["half"]
    assert [(p.name, p.kind, p.lo, p.hi) for p in half.params] == [("amount", "num", 24.0, 96.0)]
    assert half.returns == "num" and half.doc == "Half of an amount." and half.topic == "arithmetic"
    betty = next(r for r in outcome.values() if "need" in (r["code"] or ""))
    notes = json.loads(betty["details"])["functions"]
    assert notes["need"] == "no docstring" and "not self-contained" in notes["remaining"] and notes["give"] == "kept"
    # co-occurrence: Natalia's seed used half and total together
    natalia = next(r["sample_id"] for r in outcome.values() if r["code"] and "half(48)" in r["code"])
    assert load_uses(store)[natalia] == {llm["half"].function_id, add.function_id}
    assert count(store, "SELECT count(*) FROM runs WHERE run_id = ? AND status = 'completed'", [report.run_id]) == 1


def test_llm_topic_tagging_records_failures(store, seeds, pool):
    def reply(prompt: str, n: int) -> list[str]:
        if "Which topic" in prompt:
            return ["Statistics." if "Half" in prompt else "Something else entirely"]
        return scripted_decomposer(prompt)

    LibraryBuilder(Scripted(reply), tag_topics=True).run(store, "gsm8k", pool=pool)
    llm = {f.name: f for f in load_functions(store, origin="llm")}
    assert (llm["half"].topic, llm["half"].topic_origin) == ("statistics", "llm:scripted:test")
    assert llm["give"].topic is None and llm["give"].topic_origin.startswith("failed: no topic in reply")


def test_library_functions_reads_kinds_from_annotations_or_trace(pool):
    code = ("def count_items(boxes: int, per_box: 'a number') -> int:\n    \"\"\"Items in boxes.\"\"\"\n    return boxes * per_box\n\n"
            "def solution():\n    return count_items(3, 0.5)\n")
    result = pool.execute(code)
    [function], notes = library_functions(code, result.trace, "m")
    assert notes == {"count_items": "kept"}
    assert [(p.kind, p.lo, p.hi, p.step) for p in function.params] == [("int", 1, 6, 1), ("num", 0.25, 1.0, 0.1)]
    assert library_functions(code.replace("boxes * per_box", "boxes * per_box * RATE"), [], "m")[1] == \
        {"count_items": "uses RATE from outside: not self-contained"}
    assert library_functions(code.replace(": 'a number'", ""), [], "m")[1] == {"count_items": "untyped parameters"}


def test_missing_source_is_a_clear_error(store, cli):
    result = cli("synth", "library", "--from-source", "nope", "--backend", "transformers", expect=1)
    assert "source 'nope' has no samples with a gold answer" in result.stderr


# -- the real small model ------------------------------------------------------------------------
# On 2 shared CPU cores SmolLM2 writes a few tokens a second: the default run keeps one short real-model
# test; the 5-seed decomposition and LLM composition run with `make test-slow`.


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_seed_decomposition_with_smollm(store, seeds, cli):
    out = cli("synth", "library", "--from-source", "gsm8k", "--limit", "5", "--backend", "transformers",
              "--model", "smollm2-135m", "--max-tokens", "128").stdout
    run_id = out.strip().splitlines()[-1]
    outcome = rows(store, "SELECT * FROM synth_seeds WHERE run_id = ?", [run_id])
    assert len(outcome) == 5
    for seed in outcome:
        assert seed["response"]                                   # the model answered each seed
        assert (seed["status"] == "kept") == (seed["reason"] is None)
        if seed["status"] == "dropped":
            assert seed["reason"] in ("no_code", "forbidden", "invalid_code", "no_solution", "no_functions",
                                      "exception", "timeout", "answer_mismatch", "none", "non_numeric", "complex",
                                      "non_finite", "huge") and seed["error"]
    assert f"seeds: 5, kept {sum(s['status'] == 'kept' for s in outcome)}" in out
    assert count(store, "SELECT count(*) FROM llm_cache WHERE model = 'smollm2-135m'") == 5


def test_llm_backtranslation_and_verification_with_smollm(store, cli):
    # typed composition of functions that cannot fail, so the model's back-translation (and, if its
    # problem passes the checks, verification) is reached whatever it writes
    only(store, "dozens_to_items", "weeks_to_days")
    out = cli("synth", "generate", "--n", "1", "--k", "1", "--backend", "transformers", "--model", "smollm2-135m",
              "--compose", "typed", "--verify-samples", "2", "--max-tokens", "48", "--max-attempts", "1",
              "--strategy", "edgeless").stdout
    run_id = out.strip().splitlines()[-1]
    attempts = rows(store, "SELECT * FROM synth_problems WHERE run_id = ? ORDER BY attempt", [run_id])
    assert len(attempts) == 1
    for attempt in attempts:
        assert attempt["stage"] in ("backtranslate", "verify", "store")
        assert json.loads(attempt["responses"])["backtranslate"]          # the model's problem, as written
        if attempt["status"] == "rejected":
            assert attempt["reason"] and attempt["error"]
        if attempt["stage"] in ("verify", "store"):
            verification = json.loads(attempt["verification"])
            assert verification["samples"] == 2 and len(verification["answers"]) == 2
    kept = [a for a in attempts if a["status"] == "kept"]
    assert count(store, "SELECT count(*) FROM samples WHERE kind = 'synthetic'") == len(kept)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_llm_composition_with_smollm(store, cli):
    out = cli("synth", "generate", "--n", "1", "--k", "2", "--backend", "transformers", "--model", "smollm2-135m",
              "--verify-samples", "1", "--max-tokens", "96", "--max-attempts", "2").stdout
    run_id = out.strip().splitlines()[-1]
    attempts = rows(store, "SELECT * FROM synth_problems WHERE run_id = ?", [run_id])
    assert len(attempts) == 2 or attempts[0]["status"] == "kept"
    for attempt in attempts:
        assert json.loads(attempt["responses"])["compose"]
        assert attempt["status"] == "kept" or (attempt["reason"] and attempt["error"])


def test_gold_match_uses_the_full_value_of_a_float():
    from curate.synth.extract import matches_gold
    from curate.synth.values import answer_of

    third = answer_of(1 / 3)
    assert third.text == "0.33" and matches_gold(third, "\\frac{1}{3}") and matches_gold(third, "0.33")
    assert not matches_gold(answer_of(0.34), "1/3") and matches_gold(answer_of(72), "72")
