"""The real trajectory files: R1-Searcher's 1,125 eval rollouts and Search-R1's case.txt, ingested,
checked against the independent reference implementation, and audited with the README's queries."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from typer.testing import CliRunner

from curate.cli import app
from curate.store import Store
from tests import conftest
from tests.test_trajectories_e2e import ref_trajectory

README = Path(__file__).resolve().parents[1] / "README.md"
R1_FILES = ("2wiki_qwen.jsonl", "bamboogle_qwen.jsonl", "hotpotqa_qwen.jsonl")
CASE = "search_r1_case.txt"


def sql_json(cli, query: str) -> list[dict]:
    return [json.loads(line) for line in cli("sql", query, "--format", "json").stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def real_store(tmp_path_factory):
    """One store holding the real files, shared by this module's tests (ingesting takes seconds)."""
    if not conftest.SHARED_DATA.is_dir():
        pytest.skip(f"real data not available: {conftest.SHARED_DATA} is absent")
    folder = conftest.SHARED_DATA / "search" / "trajectories"
    store = Store(tmp_path_factory.mktemp("real") / "curate.duckdb")
    result = run_cli(store, "ingest", *(folder / name for name in (*R1_FILES, CASE)))
    return store, folder, result


def run_cli(store, *args):
    result = CliRunner().invoke(app, ["--db", store.path, *map(str, args)], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return result


@pytest.fixture
def cli(real_store):
    return lambda *args: run_cli(real_store[0], *args)


@pytest.fixture
def real(real_store):
    _, folder, result = real_store
    assert result.stderr.splitlines() == [f"{Path(name).stem}: detected dialect r1-searcher" for name in R1_FILES] + [
        "search_r1_case: detected dialect search-r1"]
    raw = {name: [json.loads(line) for line in (folder / name).read_text().splitlines()] for name in R1_FILES}
    return raw, (folder / CASE).read_text()


def r1_format_errors(text: str) -> list[str]:
    """R1-Searcher's format penalty conditions, written out plainly (train/reward_server_qwen_zero.py)."""
    errors = []
    counts = {text.count(m) for m in ("<|begin_of_documents|>\n", "<|end_of_documents|>\n\n", "<|begin_of_query|>",
                                      "<|end_of_query|>", "<|begin_of_documents|>", "<|end_of_documents|>",
                                      "<|begin_of_documents|>\n(1)")}
    if len(counts) > 1:
        errors.append("unbalanced_search_markers")
    if "Assistant" in text or "assistant" in text:
        errors.append("role_word_in_response")
    if not (text.count("<think>") == 0 and text.count("</think>") == 1):
        errors.append("think_tags")
    if not (text.count("<answer>") == 1 and text.count("</answer>") == 1):
        errors.append("answer_tags")
    answer = text.split("<answer>")[-1].split("</answer>")[0].strip()
    if "begin_of_query" in answer or "begin_of_documents" in answer:
        errors.append("markers_in_answer")
    if len(answer.split()) > 10:
        errors.append("answer_over_10_words")
    outside = re.sub(r"<\|begin_of_documents\|>.*?<\|end_of_documents\|>", "", text, flags=re.DOTALL)
    if any("\u4e00" <= ch <= "\u9fff" for ch in outside):
        errors.append("cjk_outside_documents")
    return errors


def test_case_txt_rollouts_are_flagged_with_the_right_error(cli, real):
    _, case = real
    rows = sql_json(cli, "SELECT t.*, s.messages FROM trajectories t JOIN samples s USING (sample_id) "
                         "WHERE dialect = 'search-r1' ORDER BY question")
    assert [r["question"] for r in rows] == [
        "paul walkers cars in fast and furious list?",
        "the heart muscle is stimulated to contract by electrical impulses which are generated where?"]
    walker, heart = rows
    # one reasons outside <think>, one closes a think block it never opened
    assert walker["format_errors"] == ["text_outside_think"] and not walker["strict_ok"]
    assert walker["strict_message"].startswith("Unexpected content 'From the information provided, it's clear")
    assert walker["strict_message"].endswith("(state: information)")
    assert heart["format_errors"] == ["extra_close_think"] and not heart["strict_ok"]
    assert heart["strict_message"] == "Mismatch in think tags: 1 opening vs 2 closing tags"
    assert walker["lenient_ok"] and heart["lenient_ok"]
    assert (walker["final_answer"], heart["final_answer"]) == ("Charger", "sinoatrial (SA) node")
    assert walker["gold_answers"] is None and walker["em"] is None       # the file has no gold answers
    assert (walker["searches"], walker["unique_queries"], walker["documents"], walker["unique_documents"]) == (2, 2, 6, 3)
    assert (heart["searches"], heart["documents"], heart["extra_think_closes"]) == (1, 3, 1)
    assert (walker["unsupported_answer"], heart["unsupported_answer"]) == (True, False)

    # each rollout's messages: its system and user turns, then the response split at its observations
    blocks = case.split("<|im_start|>system")[1:]
    for row, block in zip(rows, blocks):
        response = re.split(r"<\|im_start\|>assistant\s*", block, maxsplit=1)[1]
        messages = row["messages"]
        assert [m["role"] for m in messages[:2]] == ["system", "user"]
        assert {m["role"] for m in messages[2:]} == {"assistant", "tool"}
        assert "".join(m["content"] for m in messages[2:]) == response
        assert all(m["content"].startswith("<information>") for m in messages if m["role"] == "tool")
    steps = sql_json(cli, "SELECT s.role FROM trajectory_steps s JOIN trajectories t USING (sample_id) "
                          "WHERE t.question LIKE 'paul walkers%' ORDER BY step")
    assert [s["role"] for s in steps] == ["think", "search", "observation", "invalid", "search", "observation",
                                          "invalid", "answer"]


def test_r1_searcher_rollouts_match_the_reference(cli, real):
    raw, _ = real
    got = {(r["file"], r["question"]): r for r in sql_json(
        cli, "SELECT q.file, t.* FROM trajectories t JOIN trajectory_quality q USING (sample_id) "
             "WHERE t.dialect = 'r1-searcher'")}
    assert len(got) == sum(len(rows) for rows in raw.values()) == 1125
    disagreeing = []
    for name, rows in raw.items():
        for record in rows:
            row, ref = got[(name, record["question"].strip())], ref_trajectory("r1-searcher", record)
            key = (name, record["question"])
            assert row["final_answer"] == ref["final_answer"], key
            assert row["recorded_answer"] == record["pred_ans"], key
            if row["final_answer"] != record["pred_ans"].strip():
                disagreeing.append((key, row["final_answer"], record["pred_ans"]))
            assert (row["em"], row["cover_em"]) == (ref["em"], ref["cover_em"]), key
            assert row["f1"] == pytest.approx(ref["f1"]), key
            assert (row["searches"], row["repeated_queries"], row["documents"], row["unique_documents"]) == (
                ref["searches"], ref["repeated_queries"], ref["documents"], ref["unique_documents"]), key
            assert (row["retrieval_hit"], row["unsupported_answer"]) == (ref["retrieval_hit"], ref["unsupported"]), key
            assert row["judge_verdict"] == {"True": True, "False": False}[record["gpt4o_output"]], key
            assert row["stop_reason"] == "finished" and row["judge"] == "gpt-4o-mini"
            assert row["format_errors"] == sorted(r1_format_errors(record["gen_text_store"])), key
    # the answer is read from the text; one recorded pred_ans disagrees with its own text
    assert disagreeing == [(("bamboogle_qwen.jsonl", "When did the war that Neil Armstrong served in end?"),
                            "27 July 1953", "July 27, 1953")]
    assert count_quarantined(cli) == 0


def count_quarantined(cli) -> int:
    return sql_json(cli, "SELECT count(*) AS n FROM quarantine")[0]["n"]


def readme_queries() -> list[str]:
    section = README.read_text().split("### Audit queries", 1)[1].split("\n## ", 1)[0]     # up to the next section
    return re.findall(r"```sql\n(.*?)```", section, re.DOTALL)


def test_readme_audit_queries_on_the_real_files(cli, real):
    raw, _ = real
    queries = readme_queries()
    assert len(queries) == 5
    errors, judge, repeated, by_searches, support = (sql_json(cli, q) for q in queries)
    refs = {name: [(record, ref_trajectory("r1-searcher", record)) for record in rows] for name, rows in raw.items()}
    everything = [pair for pairs in refs.values() for pair in pairs]

    # 1. format error rates by dialect and code
    want = Counter(("r1-searcher", code) for record, _ in everything for code in r1_format_errors(record["gen_text_store"]))
    want.update({("search-r1", "text_outside_think"): 1, ("search-r1", "extra_close_think"): 1})
    assert {(r["dialect"], r["error"]): r["trajectories"] for r in errors} == dict(want)
    assert all(r["rate"] == round(r["trajectories"] / (1125 if r["dialect"] == "r1-searcher" else 2), 4) for r in errors)

    # 2. EM against gpt-4o-mini's verdict, per file
    for row in judge:
        pairs = refs[row["file"]]
        verdicts = [(ref["em"], record["gpt4o_output"] == "True") for record, ref in pairs]
        assert row["judged"] == len(pairs)
        assert row["em_only"] == sum(em == 1 and not v for em, v in verdicts)
        assert row["judge_only"] == sum(em == 0 and v for em, v in verdicts)
        assert row["disagreement"] == round(sum((em == 1) != v for em, v in verdicts) / len(pairs), 4)
    assert {row["file"] for row in judge} == set(R1_FILES)

    # 3. repeated searches, per file (case.txt: three searches, none repeated)
    want = {name: (sum(r["searches"] for _, r in pairs), sum(r["repeated_queries"] for _, r in pairs))
            for name, pairs in refs.items()}
    want[CASE] = (3, 0)
    # (sums of integers are HUGEINT, which the JSON output writes as text)
    assert {row["file"]: (int(row["searches"]), int(row["repeated"])) for row in repeated} == want
    assert any(int(row["repeated"]) for row in repeated)

    # 4. accuracy by number of searches (the gold-less case.txt is left out)
    groups = defaultdict(list)
    for _, ref in everything:
        groups[ref["searches"]].append(ref)
    assert [row["searches"] for row in by_searches] == sorted(groups)
    for row in by_searches:
        refs_n = groups[row["searches"]]
        assert row["trajectories"] == len(refs_n)
        assert row["em"] == round(sum(r["em"] for r in refs_n) / len(refs_n), 4)
        assert row["cover_em"] == round(sum(r["cover_em"] for r in refs_n) / len(refs_n), 4)
        assert row["f1"] == pytest.approx(round(sum(r["f1"] for r in refs_n) / len(refs_n), 4), abs=1e-4)

    # 5. answers no retrieved document supports, per file
    for row in support:
        if row["file"] == CASE:
            assert (row["answered"], row["unsupported"], row["correct_unsupported"], row["never_searched"]) == (2, 1, 0, 0)
            continue
        pairs = refs[row["file"]]
        assert row["answered"] == sum(r["final_answer"] is not None for _, r in pairs)
        assert row["unsupported"] == sum(bool(r["unsupported"]) for _, r in pairs)
        assert row["correct_unsupported"] == sum(bool(r["unsupported"]) and r["cover_em"] == 1 for _, r in pairs)
        assert row["never_searched"] == sum(bool(r["unsupported"]) and r["searches"] == 0 for _, r in pairs)
    assert sum(row["correct_unsupported"] for row in support) > 0


def test_select_on_the_real_rollouts_records_every_decision(cli, real):
    run_id = cli("select", "trajectory", "--budget", 50).stdout.strip().splitlines()[-1]
    rows = sql_json(cli, f"SELECT selected, reason, details FROM selections WHERE run_id = '{run_id}'")
    assert len(rows) == 1127 and sum(r["selected"] for r in rows) == 50
    assert all(r["reason"] for r in rows)
    failed = [json.loads(r["details"])["failed"] for r in rows if r["reason"].startswith("failed")]
    # R1-Searcher's top-5 retrieval: a trajectory fails unique_documents when its searches share documents
    assert any("unique_documents" in f for f in failed) and any("correct" in f for f in failed)
    # case.txt's rollouts have no gold answer, so cannot be shown correct; the Paul Walker one read the same
    # three documents twice, the heart one closes </think> twice
    case = sql_json(cli, f"SELECT t.question, sel.details FROM selections sel JOIN trajectories t USING (sample_id) "
                         f"WHERE sel.run_id = '{run_id}' AND t.dialect = 'search-r1' ORDER BY t.question")
    assert [json.loads(r["details"])["failed"] for r in case] == [["correct", "unique_documents"],
                                                                  ["correct", "think_close"]]
    # ranked by pass rate: every kept question here was solved by its one rollout
    kept = [json.loads(r["details"]) for r in rows if r["selected"]]
    assert {k["pass_rate"] for k in kept} == {1.0} and all(k["rollouts"] == 1 for k in kept)
