"""Difficulty scores in the store (resume, failures, parameters), the selector, and the rule judge on real data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import orjson
import pytest

from curate.answers import answers_match, as_number, final_answer, last_boxed
from curate.errors import CurateError
from curate.ingest import ingest
from curate.mcts import JudgeItem, RuleJudge, SearchConfig
from curate.models.llm import CachedBackend
from curate.scoring import ScoreRow, write_scores
from curate.scoring.difficulty import load_problems, score_difficulty
from curate.selectors import Pool, run_selection
from curate.selectors.difficulty import DifficultySelector
from tests.conftest import count, write_jsonl
from tests.test_mcts_driver import ScriptedPolicy

SCORER = "mcts_iters:scripted-policy"
CONFIG = SearchConfig(max_iterations=6)


def gsm8k_records(n: int, start: int = 1) -> list[dict]:
    return [{"question": f"Problem {k}: how much is {k}?", "answer": f"It is {k}.\n#### {k}"}
            for k in range(start, start + n)]


@pytest.fixture
def problems_store(store, tmp_path):
    ingest(store, [str(write_jsonl(tmp_path / "gsm.jsonl", gsm8k_records(6)))], dialect="gsm8k")
    ingest(store, [str(write_jsonl(tmp_path / "chat.jsonl", [{"prompt": "hi", "completion": "hello"}]))])
    return store


def stored(store, scorer=SCORER) -> dict[str, tuple]:
    with store.connect() as con:
        rows = con.execute("SELECT sample_id, value, status, error, details, run_id FROM scores WHERE scorer = ?",
                           [scorer]).fetchall()
    return {r[0]: (r[1], r[2], r[3], orjson.loads(r[4]) if r[4] else None, r[5]) for r in rows}


def test_scores_every_problem_with_details_and_a_rerun_searches_nothing(problems_store):
    store = problems_store
    policy = CachedBackend(ScriptedPolicy(), store)
    report = score_difficulty(store, policy, RuleJudge(), CONFIG, concurrency=4, progress=False)
    assert (report.searched, report.failed, report.solved + report.unsolved) == (6, 0, 6)
    assert report.calls == report.requests == count(store, "SELECT count(*) FROM llm_cache")
    rows = stored(store)
    assert len(rows) == 6                              # the chat sample has no gold answer: not a problem
    for value, status, error, details, run_id in rows.values():
        assert status == "ok" and error is None and run_id == report.run_id
        assert details["policy"] == {"backend": "scripted", "model": "scripted-policy"}
        assert details["judge"] == {"kind": "rule"} and details["max_iterations"] == 6
        assert details["generation_calls"] >= 1 and details["judge_calls"] >= 1 and details["tokens"]["generated"] > 0
        if details["solved"]:
            assert value == details["iterations"] == details["iterations_run"] - 1
            assert answers_match(details["final_answer"], details["gold_answer"])
            assert "Final Answer: " in details["chain"][-1]
        else:
            assert value == 6 and details["iterations"] is None and details["chain"] is None
    assert {d["solved"] for _, _, _, d, _ in rows.values()} == {True, False}
    # every request the searches made is in the cache, once: nothing asked twice, nothing wasted
    assert sum(d["generation_calls"] for _, _, _, d, _ in rows.values()) == report.calls

    again = score_difficulty(store, CachedBackend(ScriptedPolicy(), store), RuleJudge(), CONFIG, progress=False)
    assert (again.searched, again.already, again.requests) == (0, 6, 0)
    with store.connect() as con:
        status, counts = con.execute("SELECT status, counts FROM runs WHERE run_id = ?", [report.run_id]).fetchone()
    assert status == "completed" and json.loads(counts)["searched"] == 6


class CrashingPolicy(ScriptedPolicy):
    def __init__(self, crash_after: int):
        super().__init__()
        self.crash_after = crash_after

    def generate(self, requests):
        if len(self.batches) == self.crash_after:
            raise KeyboardInterrupt("killed")
        return super().generate(requests)


def test_a_crashed_run_resumes_from_the_cache_without_repeating_a_call(problems_store, tmp_path, store_factory):
    store = problems_store
    with pytest.raises(KeyboardInterrupt):
        score_difficulty(store, CachedBackend(CrashingPolicy(crash_after=6), store), RuleJudge(), CONFIG,
                         concurrency=3, progress=False, flush_seconds=0.0)
    first_calls = count(store, "SELECT count(*) FROM llm_cache")
    finished_before = stored(store)
    assert 0 < len(finished_before) < 6
    assert count(store, "SELECT count(*) FROM runs WHERE status = 'failed'") == 1

    resumed_policy = ScriptedPolicy()
    resumed = score_difficulty(store, CachedBackend(resumed_policy, store), RuleJudge(), CONFIG, concurrency=3,
                               progress=False)
    assert resumed.searched == 6 - len(finished_before) and resumed.already == len(finished_before)
    cached_keys = set(store.query("SELECT key FROM llm_cache")["key"].to_pylist())
    assert len(cached_keys) == first_calls + resumed.calls               # only new requests were sent
    sent = [r.cache_key("scripted", "scripted-policy") for r in resumed_policy.requests]
    assert len(sent) == len(set(sent)) == resumed.calls
    assert resumed.requests - resumed.calls > 0                          # the replay came from the cache
    rows = stored(store)
    assert len(rows) == 6 and all(r[1] == "ok" for r in rows.values())
    for sample_id, row in finished_before.items():                      # finished problems were not redone
        assert rows[sample_id] == row

    # the same searches, uninterrupted, on a fresh store: the same results and exactly as many calls
    fresh = store_factory("fresh")
    ingest(fresh, [str(write_jsonl(tmp_path / "gsm2.jsonl", gsm8k_records(6)))], dialect="gsm8k")
    whole = score_difficulty(fresh, CachedBackend(ScriptedPolicy(), fresh), RuleJudge(), CONFIG, concurrency=3,
                             progress=False)
    assert whole.calls == first_calls + resumed.calls
    assert {k: v[:2] + (v[3]["iterations"], v[3]["chain"]) for k, v in stored(fresh).items()} == \
        {k: v[:2] + (v[3]["iterations"], v[3]["chain"]) for k, v in rows.items()}


@pytest.fixture
def store_factory(tmp_path):
    from curate.store import Store

    return lambda name: Store(tmp_path / f"{name}.duckdb")


def test_failed_searches_are_recorded_and_retried(problems_store):
    store = problems_store
    score_difficulty(store, CachedBackend(ScriptedPolicy(broken=[3, 5]), store), RuleJudge(), CONFIG,
                     progress=False)
    rows = stored(store)
    failed = {sid: row for sid, row in rows.items() if row[1] == "failed"}
    assert len(failed) == 2
    for value, _, error, details, _ in failed.values():
        assert value is None and error == "policy call failed: HTTP 500: scripted failure"
        assert details["generation_calls"] == 1
    retry = score_difficulty(store, CachedBackend(ScriptedPolicy(), store), RuleJudge(), CONFIG, progress=False)
    assert (retry.searched, retry.already, retry.failed) == (2, 4, 0)
    assert all(row[1] == "ok" for row in stored(store).values())


def test_other_parameters_need_another_scorer_or_overwrite(problems_store):
    store = problems_store
    score_difficulty(store, CachedBackend(ScriptedPolicy(), store), RuleJudge(), CONFIG, progress=False, limit=3)
    other = SearchConfig(max_iterations=4)
    with pytest.raises(CurateError, match="other parameters.*--scorer"):
        score_difficulty(store, CachedBackend(ScriptedPolicy(), store), RuleJudge(), other, progress=False)
    side = score_difficulty(store, CachedBackend(ScriptedPolicy(), store), RuleJudge(), other, progress=False,
                            scorer="mcts_iters:short")
    assert side.searched == 6
    over = score_difficulty(store, CachedBackend(ScriptedPolicy(), store), RuleJudge(), other, progress=False,
                            overwrite=True)
    assert (over.searched, over.already) == (6, 0)
    assert {row[3]["max_iterations"] for row in stored(store).values()} == {4}


def test_limit_and_where_choose_the_problems(problems_store):
    store = problems_store
    assert len(load_problems(store)) == 6
    assert [p.question for p in load_problems(store, "prompt LIKE 'Problem 2%' OR prompt LIKE 'Problem 5%'")] == \
        [p.question for p in load_problems(store) if p.question.startswith(("Problem 2", "Problem 5"))]
    report = score_difficulty(store, CachedBackend(ScriptedPolicy(), store), RuleJudge(), CONFIG, progress=False,
                              limit=2)
    assert report.searched == 2 and len(stored(store)) == 2
    with pytest.raises(CurateError, match="--where"):
        load_problems(store, "no_such_column = 1")


# -- selection --------------------------------------------------------------------------------------

def fake_scores(store, tmp_path) -> list[str]:
    """Seven problems: solved at 0, 5, 6, 9, 9; unsolved (cap 50); one failed. Returns their ids in order."""
    ingest(store, [str(write_jsonl(tmp_path / "g.jsonl", gsm8k_records(8)))], dialect="gsm8k")
    ids = [p.sample_id for p in load_problems(store)]
    rows = []
    for sample_id, iterations in zip(ids, [0, 5, 6, 9, 9, None]):
        solved = iterations is not None
        rows.append(ScoreRow(sample_id, float(iterations if solved else 50),
                             {"solved": solved, "iterations": iterations, "max_iterations": 50}))
    rows.append(ScoreRow(ids[6], None, {"generation_calls": 1}, error="policy call failed: boom"))
    write_scores(store, SCORER, rows)
    return ids


def decisions(store, run_id):
    with store.connect() as con:
        return con.execute("SELECT sample_id, selected, rank, score, reason FROM selections WHERE run_id = ? "
                           "ORDER BY selected DESC, rank, sample_id", [run_id]).fetchall()


def test_selector_keeps_unsolved_and_solved_after_min_iters(store, tmp_path):
    ids = fake_scores(store, tmp_path)
    pool = Pool.from_store(store)
    rows = decisions(store, run_selection(store, DifficultySelector(SCORER), pool, None))
    kept = [(sid, rank, score, reason) for sid, selected, rank, score, reason in rows if selected]
    assert kept == [(ids[5], 1, 50.0, "unsolved within 50 iterations"),
                    (ids[3], 2, 9.0, "solved at iteration 9 > 5"), (ids[4], 3, 9.0, "solved at iteration 9 > 5"),
                    (ids[2], 4, 6.0, "solved at iteration 6 > 5")]
    dropped = {sid: reason for sid, selected, _, _, reason in rows if not selected}
    assert dropped == {ids[0]: "solved at iteration 0 <= 5", ids[1]: "solved at iteration 5 <= 5",
                       ids[6]: "search failed: policy call failed: boom", ids[7]: f"no {SCORER} score"}


def test_selector_flags_and_budget(store, tmp_path):
    ids = fake_scores(store, tmp_path)
    pool = Pool.from_store(store)

    def kept(selector, budget=None):
        return [(sid, reason) for sid, selected, _, _, reason in
                decisions(store, run_selection(store, selector, pool, budget)) if selected]

    assert [sid for sid, _ in kept(DifficultySelector(SCORER, keep_unsolved=False))] == [ids[3], ids[4], ids[2]]
    assert [sid for sid, _ in kept(DifficultySelector(SCORER, unsolved_first=False), 2)] == [ids[3], ids[4]]
    assert [sid for sid, _ in kept(DifficultySelector(SCORER), 2)] == [ids[5], ids[3]]
    assert [sid for sid, _ in kept(DifficultySelector(SCORER, min_iters=0), 10)] == [ids[5], ids[3], ids[4],
                                                                                    ids[2], ids[1]]
    run = run_selection(store, DifficultySelector(SCORER, keep_unsolved=False), pool, 1)
    reasons = {sid: reason for sid, selected, _, _, reason in decisions(store, run) if not selected}
    assert reasons[ids[5]] == "unsolved within 50 iterations (--drop-unsolved)"
    assert reasons[ids[4]] == "over budget: solved at iteration 9 > 5"


def test_select_and_score_cli(cli, store, tmp_path):
    ids = fake_scores(store, tmp_path)
    out = cli("select", "difficulty", "--budget", "3").stdout.strip().splitlines()
    assert out[-2] == "selected 3 of 8 samples"
    assert [r[0] for r in decisions(store, out[-1]) if r[1]] == [ids[5], ids[3], ids[4]]
    write_scores(store, "mcts_iters:other-model", [ScoreRow(ids[0], 1.0, {"solved": True, "iterations": 1})])
    result = cli("select", "difficulty", expect=1)
    assert "--scorer" in result.stderr and "mcts_iters:other-model" in result.stderr
    out = cli("select", "difficulty", "--scorer", SCORER, "--drop-unsolved", "--min-iters", "8").stdout
    assert "selected 2 of 8 samples" in out


# -- the rule judge against real gold answers ------------------------------------------------------

def perturbed(answer: str) -> str:
    value = as_number(answer)
    return str(value + 1) if value is not None else answer + "+1"


def test_rule_judge_accepts_each_gold_solutions_own_answer_and_rejects_a_perturbed_one(store, shared_data):
    ingest(store, [str(shared_data / "math" / "gsm8k_test.jsonl"), str(shared_data / "math" / "math500_test.jsonl")])
    with store.connect() as con:
        rows = con.execute("SELECT s.prompt, s.gold_answer, s.response, src.dialect FROM samples s "
                           "JOIN sample_sources USING (sample_id) JOIN sources src USING (source_id)").fetchall()
    assert {dialect for *_, dialect in rows} == {"gsm8k", "math"} and len(rows) == 1319 + 500
    judge = RuleJudge()
    # the whole gold solution as the chain: the judge finds its final answer (`#### x` or the last box)
    right = judge.judge([JudgeItem(q, gold, solution) for q, gold, solution, _ in rows])
    assert all(j.verdict for j in right), [r[2][-80:] for r, j in zip(rows, right) if not j.verdict][:5]

    def swap(solution: str) -> str:
        answer = final_answer(solution)
        if "####" in solution:
            return solution.rsplit("####", 1)[0] + "#### " + perturbed(answer)
        head, _, tail = solution.rpartition("\\boxed{" + last_boxed(solution))
        return head + "\\boxed{" + perturbed(answer) + tail

    wrong = judge.judge([JudgeItem(q, gold, swap(solution)) for q, gold, solution, _ in rows])
    assert not any(j.verdict for j in wrong), [swap(r[2])[-80:] for r, j in zip(rows, wrong) if j.verdict][:5]
    # and in the policy's own format
    chain = "### Step1: 2 + 2 <end>\n### Final Answer: The answer is: $\\boxed{%s}$. <end>"
    assert all(j.verdict for j in judge.judge([JudgeItem(q, gold, chain % gold) for q, gold, _, _ in rows]))


@pytest.mark.parametrize("chain, answer", [
    ("### Final Answer: The answer is: $\\boxed{217}$. <end>", "217"),
    ("### Final Answer: The answer is: $boxed{1}$. <end>", "1"),       # the reference examples' bare box
    ("### Final Answer: The answer is: 42. <end>", "42"),
    ("Natalia sold 48+24 = 72 clips.\n#### 1,072", "1072"),
    ("### Step1: the answer is 3 <end>\n### Final Answer: \\frac{1}{2} <end>", "\\frac{1}{2}"),
    ("no answer here <end>", None),
])
def test_final_answer(chain, answer):
    assert final_answer(chain) == answer


def test_scorer_names_include_the_policy_model(problems_store):
    store = problems_store
    score_difficulty(store, CachedBackend(ScriptedPolicy("model-a"), store), RuleJudge(), CONFIG, progress=False,
                     limit=2)
    score_difficulty(store, CachedBackend(ScriptedPolicy("model-b"), store), RuleJudge(), CONFIG, progress=False,
                     limit=2)
    names = store.query("SELECT DISTINCT scorer FROM scores ORDER BY 1")["scorer"].to_pylist()
    assert names == ["mcts_iters:model-a", "mcts_iters:model-b"]


@pytest.mark.parametrize("predicted, gold, same", [
    ("1450001", "1,450,000", False), ("11111111101", "11,\\! 111,\\! 111,\\! 100", False),
    ("1450000", "1,450,000", True), ("1450000.0", "1450000", True), ("0.333333", "\\frac{1}{3}", True),
    ("2", "1.9999999", True), ("-5", "5", False),
])
def test_integers_match_exactly_decimals_within_tolerance(predicted, gold, same):
    assert answers_match(predicted, gold) is same


def test_readme_histogram_query_works_as_written(cli, store, tmp_path):
    fake_scores(store, tmp_path)
    write_scores(store, "mcts_iters:smollm2-135m", [ScoreRow(i, r[0], r[3]) for i, r in stored(store).items()
                                                   if r[1] == "ok"])
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    query = re.search(r'^curate --db my.duckdb sql "(SELECT src.name AS source.*)"$', readme, re.M).group(1)
    out = [json.loads(line) for line in cli("sql", query, "--format", "json").stdout.splitlines()]
    assert [(r["source"], r["iterations"], r["problems"]) for r in out] == [
        ("g", "0", 1), ("g", "5", 1), ("g", "6", 1), ("g", "9", 2), ("g", "unsolved", 1)]
