"""`select trajectory`: each criterion and its flag, per-question choice, seeded all-solved drops,
and every decision recorded with its reasons."""

from __future__ import annotations

import json

import pytest

from curate.ingest import ingest
from curate.selectors import Pool, run_selection
from curate.selectors.trajectory import CRITERIA, TrajectorySelector
from curate.store.runs import get_run
from tests.conftest import write_jsonl


def docs(*names: str) -> str:
    return "".join(f'Doc {i + 1}(Title: "{name}") {name} is a page about {name}.\n' for i, name in enumerate(names))


def rollout(question: str, gold: str, answer: str | None, *, searches=(("q1", ("A", "B", "C")),),
            reasoning: str = "Thinking.", final: str = "Done.", extra: str = "") -> dict:
    """A Search-R1 record: one think/search/information round per search, then the answer."""
    response = ""
    for query, names in searches:
        response += f"<think> {reasoning} </think>\n<search> {query} </search>\n\n<information>{docs(*names).strip()}</information>\n\n"
    response += f"<think> {final} </think>{extra}\n"
    if answer is not None:
        response += f"<answer> {answer} </answer>"
    return {"prompt": [{"role": "user", "content": f"Question: {question}"}], "response": response,
            "reward_model": {"ground_truth": {"target": [gold]}}}


def decisions(store, run_id: str) -> dict[str, dict]:
    with store.connect() as con:
        rows = con.execute(
            "SELECT t.question, t.searches, sel.selected, sel.rank, sel.reason, sel.details FROM selections sel "
            "JOIN trajectories t USING (sample_id) WHERE sel.run_id = ?", [run_id]).fetchall()
    out = {}
    for question, searches, selected, rank, reason, details in rows:
        out.setdefault(question, []).append({"searches": searches, "selected": selected, "rank": rank,
                                             "reason": reason, "details": json.loads(details) if details else None})
    return out


def select(store, **params):
    budget = params.pop("budget", None)
    return run_selection(store, TrajectorySelector(**params), Pool.from_store(store, "kind = 'trajectory'"), budget)


ONE_EACH = {
    "correct": rollout("c?", "Paris", "Lyon"),
    "markers": rollout("m?", "Paris", "Paris", searches=(("q1", ("A", "B", "C")), ("  ", ("D", "E", "F")))),
    "think_close": rollout("t?", "Paris", "Paris", extra=" </think>"),
    "first_segment": rollout("f?", "Paris", "Paris", reasoning="word " * 300),
    "longest_segment": rollout("l?", "Paris", "Paris", final="word " * 300),
    "fillers": rollout("w?", "Paris", "Paris", final="wait " * 4),
    "repetition": rollout("r?", "Paris", "Paris", final="again " * 280),
    "unique_documents": rollout("u?", "Paris", "Paris", searches=(("q1", ("A", "B", "C")), ("q2", ("A", "B", "C")))),
    "boxed_before_think": rollout("b?", "Paris", "Paris", reasoning="maybe \\boxed{Paris}"),
    "cjk": rollout("k?", "Paris", "Paris", final="答案是巴黎"),
    "length": rollout("n?", "Paris", "Paris", final="a b c d e f g h i j " * 301),
    "none": rollout("ok?", "Paris", "Paris"),
}


@pytest.fixture
def one_each(store, tmp_path):
    ingest(store, [str(write_jsonl(tmp_path / "each.jsonl", list(ONE_EACH.values())))], dialect="search-r1")
    return store


def test_each_criterion_drops_its_trajectory_with_its_value(one_each):
    run_id = select(one_each, all_solved_drop=0.0)
    got = decisions(one_each, run_id)
    question_of = {name: record["prompt"][0]["content"].removeprefix("Question: ") for name, record in ONE_EACH.items()}
    for name in CRITERIA:
        (decision,) = got[question_of[name]]
        assert not decision["selected"] and name in decision["details"]["failed"], (name, decision)
    (ok,) = got[question_of["none"]]
    assert ok["selected"] and ok["rank"] == 1
    # the length rollout fails several at once: every one is listed, with its measured value
    (long,) = got[question_of["length"]]
    assert long["details"]["failed"] == ["longest_segment", "length"]
    assert long["reason"] == "failed: longest_segment, length"
    assert long["details"]["values"]["length"] > 3000
    assert got[question_of["correct"]][0]["details"]["values"]["correct"] == [0.0, 0.0]
    assert got[question_of["unique_documents"]][0]["details"]["values"]["unique_documents"] == 1.5
    counts = get_run(one_each, run_id)["counts"]
    assert counts["valid"] == 1 and counts["failed"]["cjk"] == 1 and counts["selected"] == 1


def test_thresholds_and_criteria_subsets(one_each):
    relaxed = select(one_each, all_solved_drop=0.0, max_fillers=4, segment_word_limit=310, max_extra_think_closes=1,
                     max_trigram_share=0.9, max_words=10_000, top_k=1)
    got = decisions(one_each, relaxed)
    for question in ("w?", "f?", "t?", "u?"):
        assert got[question][0]["selected"], (question, got[question])
    only_correct = decisions(one_each, select(one_each, criteria=["correct"], all_solved_drop=0.0))
    assert [q for q, (d,) in only_correct.items() if not d["selected"]] == ["c?"]
    with pytest.raises(Exception, match="unknown criteria"):
        select(one_each, criteria=["correct", "vibes"])


def test_per_question_fewest_searches_and_pass_rate_ranking(store, tmp_path):
    records = [
        rollout("easy?", "Paris", "Paris"),
        rollout("easy?", "Paris", "Paris", searches=(("q1", ("A", "B", "C")), ("q2", ("D", "E", "F")))),
        rollout("hard?", "Rome", "Rome", searches=(("q1", ("A", "B", "C")), ("q2", ("D", "E", "F")))),
        rollout("hard?", "Rome", "Milan"),
        rollout("harder?", "Oslo", "Oslo", searches=(("q1", ("A", "B", "C")), ("q2", ("D", "E", "F")),
                                                      ("q3", ("G", "H", "I")))),
        rollout("harder?", "Oslo", "Bergen"),
        rollout("harder?", "Oslo", "Bergen", final="Hmm."),
    ]
    ingest(store, [str(write_jsonl(tmp_path / "q.jsonl", records))])
    run_id = select(store, all_solved_drop=0.0)
    got = decisions(store, run_id)
    kept = sorted((d["rank"], q, d["searches"]) for q, ds in got.items() for d in ds if d["selected"])
    # pass rate ascending (1/3, 1/2, 1), each question by its valid rollout with the fewest searches
    assert kept == [(1, "harder?", 3), (2, "hard?", 2), (3, "easy?", 1)]
    (other,) = [d for d in got["easy?"] if not d["selected"]]
    assert other["reason"] == "a valid rollout of this question with no more searches was chosen"
    assert [d["details"]["pass_rate"] for d in sorted(
        (d for ds in got.values() for d in ds if d["selected"]), key=lambda d: d["rank"])] == [1 / 3, 0.5, 1.0]
    # a budget keeps the first questions of that order and says why the rest went
    got = decisions(store, select(store, all_solved_drop=0.0, budget=1))
    assert [q for q, ds in got.items() if any(d["selected"] for d in ds)] == ["harder?"]
    assert {d["reason"] for d in got["easy?"]} == {
        "over budget: question ranked 3, budget 1", "a valid rollout of this question with no more searches was chosen"}


def test_all_solved_questions_are_dropped_by_a_seeded_draw(store, tmp_path):
    records = [rollout(f"q{i}?", "Paris", "Paris") for i in range(40)]
    ingest(store, [str(write_jsonl(tmp_path / "solved.jsonl", records))])

    def kept(**params):
        got = decisions(store, select(store, **params))
        return sorted(q for q, (d,) in got.items() if d["selected"])

    assert len(kept(all_solved_drop=0.0)) == 40 and kept(all_solved_drop=1.0) == []
    first, again, other = kept(seed=1), kept(seed=1), kept(seed=2)
    assert first == again != other
    assert 2 <= len(first) <= 16                         # about one in five of 40 kept
    dropped = [d for (d,) in decisions(store, select(store, seed=1)).values() if not d["selected"]]
    assert {d["reason"] for d in dropped} == {"every rollout of this question is correct: dropped with probability 0.8"}


def test_cli_select_trajectory(cli, store, tmp_path):
    ingest(store, [str(write_jsonl(tmp_path / "each.jsonl", list(ONE_EACH.values())))])
    ingest(store, [str(write_jsonl(tmp_path / "instr.jsonl", [{"prompt": "p", "completion": "c"}]))])
    result = cli("select", "trajectory", "--all-solved-drop", "0", "--max-fillers", "5", "--criteria",
                 "correct,fillers")
    run_id = result.stdout.strip().splitlines()[-1]
    assert "selected 11 of 12 samples" in result.stdout           # the instruction sample is not in the pool
    run = get_run(store, run_id)
    assert run["kind"] == "select:trajectory" and run["params"]["max_fillers"] == 5
    assert run["params"]["criteria"] == ["correct", "fillers"] and run["params"]["budget"] is None
    bad = cli("select", "trajectory", "--criteria", "correct,vibes", expect=1)
    assert "unknown vibes" in bad.stderr
    where = cli("select", "trajectory", "--where", "prompt LIKE '%ok?%'", "--all-solved-drop", "0")
    assert "selected 1 of 1 samples" in where.stdout


def test_a_pool_sample_without_a_trajectory_is_dropped_with_a_reason(one_each, tmp_path):
    ingest(one_each, [str(write_jsonl(tmp_path / "instr.jsonl", [{"prompt": "p", "completion": "c"}]))])
    run_id = run_selection(one_each, TrajectorySelector(all_solved_drop=0.0), Pool.from_store(one_each), None)
    with one_each.connect() as con:
        reason = con.execute("SELECT sel.reason FROM selections sel JOIN samples s USING (sample_id) "
                             "WHERE run_id = ? AND s.kind = 'instruction'", [run_id]).fetchone()[0]
        total = con.execute("SELECT count(*) FROM selections WHERE run_id = ?", [run_id]).fetchone()[0]
    assert reason == "not a trajectory (no trajectories row)" and total == len(ONE_EACH) + 1
