"""The four trajectory dialects: hand-written fixtures that follow each reference's code, detection,
the ChatML `.txt` reader, and what lands in `samples`, `trajectories` and `trajectory_steps`."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate import formats
from curate.errors import FieldError
from curate.ingest import ingest
from curate.ingest.readers import expand, read
from tests.conftest import count, write_jsonl

FIXTURES = Path(__file__).parent / "fixtures" / "search"


def rows(store, sql: str, params: list | None = None) -> list[dict]:
    with store.connect() as con:
        cursor = con.execute(sql, params or [])
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


def trajectory(store, question: str) -> dict:
    (row,) = rows(store, "SELECT * FROM trajectories WHERE question = ?", [question])
    return row


def steps(store, question: str) -> list[dict]:
    return rows(store, "SELECT s.* FROM trajectory_steps s JOIN trajectories t USING (sample_id) "
                       "WHERE t.question = ? ORDER BY step", [question])


def jsonl(name: str) -> list[dict]:
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines()]


# -- detection ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, dialect", [
    ("search_r1_rollouts.jsonl", "search-r1"),
    ("search_r1_chatml.jsonl", "search-r1"),
    ("zerosearch_rollouts.jsonl", "zerosearch"),
    ("r1_searcher_rollouts.jsonl", "r1-searcher"),
])
def test_auto_detection_tells_the_dialects_apart(name, dialect):
    for record in jsonl(name):
        if "gen_text_store" in record or "response" in record:
            assert formats.detect(record).name == dialect
    if name.startswith("zerosearch"):
        # without its `Doc i:` results or a search_mode, a ZeroSearch row reads as Search-R1
        plain = {**jsonl(name)[0], "response": "<think> x </think>\n<answer> y </answer>"}
        assert formats.detect(plain).name == "search-r1"


def test_auto_detection_of_sft_items_and_not_instruction_dialects():
    (item, *_) = json.loads((FIXTURES / "simple_deep_searcher_sft.json").read_text())
    assert formats.detect(item).name == "simple-deep-searcher"
    # instruction data is still read as before
    assert formats.detect({"prompt": "p", "completion": "c"}).name == "prompt-completion"
    assert formats.detect({"question": "q", "answer": "x #### 4"}).name == "gsm8k"
    assert formats.detect({"instruction": "i", "input": "", "output": "o"}).name == "alpaca"
    # keys alone are not enough: a prompt/response pair without any Search-R1 tag is not a trajectory
    assert formats.detect({"prompt": "p", "response": "plain text"}) is None
    # another dialect's tags in the text rule a dialect out
    r1_row = jsonl("r1_searcher_rollouts.jsonl")[0]
    assert formats.detect({"prompt": "p", "response": r1_row["gen_text_store"]}) is None


def test_ingest_auto_says_which_dialect_it_chose(store):
    messages = []
    ingest(store, [str(FIXTURES)], log=messages.append)
    assert sorted(messages) == ["search: detected dialect r1-searcher", "search: detected dialect search-r1 in 2 inputs",
                                "search: detected dialect simple-deep-searcher", "search: detected dialect zerosearch"]
    assert count(store, "SELECT count(*) FROM samples WHERE kind = 'trajectory'") == 13
    assert count(store, "SELECT count(*) FROM trajectories") == 13
    # every step row belongs to a trajectory, and steps are numbered 1..n
    assert count(store, "SELECT count(*) FROM trajectory_steps s ANTI JOIN trajectories USING (sample_id)") == 0
    assert count(store, "SELECT count(*) FROM (SELECT sample_id FROM trajectory_steps GROUP BY sample_id "
                        "HAVING max(step) <> count(*) OR min(step) <> 1)") == 0


# -- Search-R1 ------------------------------------------------------------------------------------


def test_search_r1_parquet_rows(store, tmp_path):
    """Search-R1's parquet shape (nq_search.py) plus a response column, read through Arrow."""
    path = tmp_path / "test.parquet"
    pq.write_table(pa.Table.from_pylist(jsonl("search_r1_rollouts.jsonl")), path)
    (report,) = ingest(store, [str(path)])
    assert (report.dialect, report.counts.new, report.counts.quarantined) == ("search-r1", 4, 0)

    good = trajectory(store, "which league awards the stanley cup?")
    assert good["gold_answers"] == ["National Hockey League", "NHL"]
    assert (good["final_answer"], good["answer_source"]) == ("National Hockey League", "answer_tag")
    assert (good["em"], good["f1"], good["cover_em"], good["retrieval_hit"]) == (1.0, 1.0, 1.0, True)
    assert (good["searches"], good["documents"], good["unique_documents"], good["top_k"]) == (1, 2, 2, 2)
    assert (good["strict_ok"], good["lenient_ok"], good["format_errors"]) == (True, True, [])
    assert (good["turns"], good["steps"], good["extra_think_closes"]) == (2, 5, 0)
    assert good["reasoning_words"] == 10 + 7     # "I need to find ... Stanley Cup." + "The documents say ... it."

    invalid = trajectory(store, "what is the capital of australia?")
    assert invalid["format_errors"] == ["text_outside_think"] and invalid["lenient_ok"]
    # the reference quotes everything up to the next tag, the environment's notice included
    assert invalid["strict_message"] == (
        "Unexpected content 'I will look it up.\nMy previous action is invalid. If I want to search, I should put "
        "the query between' between tags (state: after_think)")
    assert [s["role"] for s in steps(store, "what is the capital of australia?")] == [
        "think", "invalid", "system", "think", "search", "observation", "think", "answer"]

    repeated = trajectory(store, "what is the largest city in australia by area?")
    assert (repeated["searches"], repeated["unique_queries"], repeated["repeated_queries"]) == (2, 1, 1)
    assert (repeated["documents"], repeated["unique_documents"], repeated["repeated_documents"]) == (4, 2, 2)
    assert (repeated["em"], repeated["retrieval_hit"], repeated["unsupported_answer"]) == (0.0, False, True)

    cut = trajectory(store, "who wrote the novel dracula?")
    assert cut["final_answer"] is None and (cut["em"], cut["f1"], cut["cover_em"]) == (0.0, 0.0, 0.0)
    assert cut["format_errors"] == ["no_answer", "unclosed_think"] and cut["retrieval_hit"]
    assert cut["answer_in_reasoning"] is None and cut["unsupported_answer"] is None

    # unmapped fields are kept as meta; the single-gold sample also has samples.gold_answer
    meta, gold = rows(store, "SELECT s.meta, s.gold_answer FROM samples s JOIN trajectories t USING (sample_id) "
                             "WHERE t.question = 'what is the capital of australia?'")[0].values()
    assert json.loads(meta) == {"data_source": "nq", "ability": "fact-reasoning", "extra_info": {"split": "test", "index": 1}}
    assert gold == "Canberra"


def test_messages_mask_documents_as_tool_turns(store):
    ingest(store, [str(FIXTURES / "search_r1_rollouts.jsonl")])
    (row,) = rows(store, "SELECT s.messages FROM samples s JOIN trajectories t USING (sample_id) "
                         "WHERE t.question = 'which league awards the stanley cup?'")
    messages = row["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"]
    assert messages[0]["content"].endswith("Question: which league awards the stanley cup?\n")
    assert messages[1]["content"].startswith("<think> I need") and messages[1]["content"].endswith("</search>\n\n")
    assert messages[2]["content"].startswith("<information>Doc 1(Title: \"Stanley Cup\")")
    # the response is its steps joined, and each step says which message holds it and whether to train on it
    record = jsonl("search_r1_rollouts.jsonl")[0]
    parts = steps(store, "which league awards the stanley cup?")
    assert "".join(s["text"] for s in parts) == record["response"]
    assert "".join(m["content"] for m in messages[1:]) == record["response"]
    assert [(s["role"], s["message_index"], s["loss_mask"]) for s in parts] == [
        ("think", 2, True), ("search", 2, True), ("observation", 3, False), ("think", 4, True), ("answer", 4, True)]
    assert parts[1]["query"] == "Stanley Cup league"
    assert [d["title"] for d in parts[2]["documents"]] == ["Stanley Cup", "NHL"]


def test_search_r1_chatml_strings(store):
    ingest(store, [str(FIXTURES / "search_r1_chatml.jsonl")])
    first = trajectory(store, "who painted the mona lisa?")
    assert (first["final_answer"], first["em"], first["searches"], first["unsupported_answer"]) == (
        "Leonardo da Vinci", 1.0, 0, True)
    second = trajectory(store, "who painted the last supper?")
    assert second["policy_model"] == "Qwen2.5-7B-Instruct" and second["strict_ok"]   # the <|im_end|> is not text
    (row,) = rows(store, "SELECT s.messages FROM samples s JOIN trajectories t USING (sample_id) "
                         "WHERE t.question = 'who painted the last supper?'")
    assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]


def test_answer_is_taken_from_the_response_not_the_prompt():
    record = jsonl("search_r1_rollouts.jsonl")[3]        # cut off: its only <answer> is the prompt's example
    assert "<answer> Beijing </answer>" in record["prompt"][0]["content"]
    sample = formats.get("search-r1").adapt(record)
    assert sample.related["trajectories"][0]["final_answer"] is None


@pytest.mark.parametrize("record, field", [
    ({"response": "<answer> x </answer>"}, "prompt"),
    ({"prompt": 3, "response": "<answer> x </answer>"}, "prompt"),
    ({"prompt": [{"role": "user", "content": "Question: q"}], "response": "   "}, "response"),
    ({"prompt": [{"role": "alien", "content": "q"}], "response": "<answer> x </answer>"}, "prompt[0].role"),
    ({"prompt": "Question: q", "response": "<answer> x </answer>", "reward_model": {"ground_truth": {"target": [1.5, {}]}}},
     "reward_model.ground_truth.target[1]"),
    ({"text": "no chatml here <answer> x </answer>"}, "text"),
    ({"prompt": "Question:  ", "response": "<answer> x </answer>"}, "prompt"),
])
def test_search_r1_unreadable_rows_name_the_field(record, field):
    with pytest.raises(FieldError) as error:
        formats.get("search-r1").adapt(record)
    assert error.value.field == field


# -- the ChatML .txt reader -----------------------------------------------------------------------


def test_txt_reader_splits_rollouts_at_system_turns(tmp_path):
    path = tmp_path / "rollouts.txt"
    path.write_text("preamble\n<|im_start|>system\nA<|im_end|>\n<|im_start|>user\nq1\n"
                    "\n<|im_start|>system\nB<|im_end|>\nrest\n", encoding="utf-8")
    (source,) = expand(str(path))
    assert source.format == "text"
    got = [row for batch in read(source) for row in batch]
    assert [(r.row_number, r.record["text"]) for r in got] == [
        (1, "preamble\n"), (2, "<|im_start|>system\nA<|im_end|>\n<|im_start|>user\nq1\n\n"),
        (7, "<|im_start|>system\nB<|im_end|>\nrest\n")]
    # resuming after row 2 reads only the last block; small batches split it into batches
    assert [r.row_number for batch in read(source, skip_through=2) for r in batch] == [7]
    assert [len(batch) for batch in read(source, batch_rows=1)] == [1, 1, 1]


def test_txt_without_a_rollout_is_quarantined_not_lost(store, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("just some notes <answer> x </answer>\n")
    (report,) = ingest(store, [str(path)], dialect="search-r1")
    assert (report.counts.new, report.counts.quarantined) == (0, 1)
    (row,) = rows(store, "SELECT row_number, field, reason, raw FROM quarantine")
    assert (row["row_number"], row["field"]) == (1, "text") and "assistant" in row["reason"]
    assert "just some notes" in row["raw"]


# -- ZeroSearch -----------------------------------------------------------------------------------


def test_zerosearch_documents_are_flagged_simulated(store):
    (report,) = ingest(store, [str(FIXTURES / "zerosearch_rollouts.jsonl")])
    assert report.dialect == "zerosearch"
    simulated = trajectory(store, "who discovered penicillin?")
    assert (simulated["simulated_search"], simulated["documents"], simulated["retrieval_hit"]) == (True, 3, True)
    assert simulated["gold_answers"] == ["Alexander Fleming"] and simulated["strict_ok"]
    observation = next(s for s in steps(store, "who discovered penicillin?") if s["role"] == "observation")
    assert observation["simulated"] is True and observation["documents"][0]["text"].startswith("Penicillin was")
    real = trajectory(store, "when was the eiffel tower completed?")      # search_mode: google
    assert real["simulated_search"] is False
    assert count(store, "SELECT count(*) FROM trajectory_steps WHERE simulated IS NOT NULL AND role <> 'observation'") == 0
    with pytest.raises(FieldError) as error:
        formats.get("zerosearch").adapt({**jsonl("zerosearch_rollouts.jsonl")[0], "search_mode": "bing"})
    assert error.value.field == "search_mode"


# -- R1-Searcher ----------------------------------------------------------------------------------


def test_r1_searcher_rows_and_early_stops(store):
    (report,) = ingest(store, [str(FIXTURES / "r1_searcher_rollouts.jsonl")])
    assert (report.dialect, report.counts.new, report.counts.quarantined) == ("r1-searcher", 3, 1)
    (row,) = rows(store, "SELECT row_number, field, reason FROM quarantine")
    assert (row["row_number"], row["field"]) == (4, "gen_text_store") and "shot_down" in row["reason"]

    good = trajectory(store, "Who was born first, Albert Einstein or Niels Bohr?")
    assert (good["final_answer"], good["recorded_answer"], good["stop_reason"]) == (
        "Albert Einstein", " Albert Einstein ", "finished")
    assert (good["judge"], good["judge_output"], good["judge_verdict"]) == ("gpt-4o-mini", "True", True)
    assert (good["searches"], good["documents"], good["turns"], good["strict_ok"]) == (2, 2, 3, True)
    assert [s["role"] for s in steps(store, "Who was born first, Albert Einstein or Niels Bohr?")] == [
        "think", "search", "observation", "think", "search", "observation", "think", "answer"]

    empty_query = trajectory(store, "Is the Danube longer than the Rhine?")
    assert empty_query["stop_reason"] == "query_inst_error" and empty_query["judge_verdict"] is False
    assert {"empty_query", "unclosed_query", "no_answer"} <= set(empty_query["format_errors"])

    partial = trajectory(store, "What is the capital of Mongolia?")
    assert "partial_response" in partial["format_errors"] and not partial["lenient_ok"]
    assert partial["judge"] is None and partial["judge_verdict"] is None


# -- SimpleDeepSearcher ---------------------------------------------------------------------------


def test_simple_deep_searcher_sft_items(store):
    (report,) = ingest(store, [str(FIXTURES / "simple_deep_searcher_sft.json")])
    assert (report.dialect, report.counts.new) == ("simple-deep-searcher", 2)
    danube = trajectory(store, "Which river flows through both Vienna and Budapest?")
    assert (danube["final_answer"], danube["answer_source"], danube["em"]) == ("Danube", "boxed", 1.0)
    assert danube["gold_answers"] == ["Danube", "Danube River"]
    assert (danube["searches"], danube["documents"], danube["unique_documents"], danube["top_k"]) == (1, 3, 3, 3)
    assert (danube["strict_ok"], danube["extra_think_closes"], danube["boxed_before_think_end"]) == (True, 0, 0)
    parts = steps(store, "Which river flows through both Vienna and Budapest?")
    assert [s["role"] for s in parts] == ["think", "search", "observation", "think", "answer"]
    assert parts[2]["documents"][0] == {"id": "Danube - Wikipedia", "title": "Danube - Wikipedia",
                                        "url": "https://en.wikipedia.org/wiki/Danube",
                                        "text": "The Danube flows through Vienna, Bratislava, Budapest and Belgrade."}
    (row,) = rows(store, "SELECT s.messages FROM samples s JOIN trajectories t USING (sample_id) "
                         "WHERE t.question = 'Which river flows through both Vienna and Budapest?'")
    assert [m["role"] for m in row["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert row["messages"][0]["content"].startswith("You are a reasoning assistant")
    assert row["messages"][2]["content"].strip().startswith("<|begin_search_result|>The Danube flows")

    rusalka = trajectory(store, "Who composed the opera Rusalka?")
    # the repeated query got the environment's notice, not results: a system step, one distinct page
    assert (rusalka["searches"], rusalka["repeated_queries"], rusalka["documents"]) == (2, 1, 1)
    assert [s["role"] for s in steps(store, "Who composed the opera Rusalka?")].count("system") == 1
    # SimpleDeepSearcher counts fillers as written: "Hmm" is not "hmm"
    assert (rusalka["max_alternatively"], rusalka["max_wait"], rusalka["max_hmm"]) == (1, 1, 0)
    assert rusalka["final_answer"] == "Antonín Dvořák" and rusalka["em"] == 1.0


@pytest.mark.parametrize("output, field", [
    ([{"gen": "a", "doc": "b"}], "output[0]"),
    ([{"thought": "a"}], "output[0]"),
    ([{"gen": 3}], "output[0].gen"),
    ("text", "output"),
])
def test_simple_deep_searcher_bad_output_names_the_field(output, field):
    with pytest.raises(FieldError) as error:
        formats.get("simple-deep-searcher").adapt({"question": "q", "answer": ["a"], "output": output})
    assert error.value.field == field


def test_reingest_adds_no_second_trajectory(store, tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", jsonl("search_r1_rollouts.jsonl"))
    ingest(store, [str(path)])
    copy = write_jsonl(tmp_path / "b.jsonl", jsonl("search_r1_rollouts.jsonl")[:2])
    (report,) = ingest(store, [str(copy)])
    assert (report.counts.new, report.counts.duplicate) == (0, 2)
    assert count(store, "SELECT count(*) FROM trajectories") == 4
    assert count(store, "SELECT count(*) FROM trajectory_steps") == count(
        store, "SELECT sum(steps) FROM trajectories")
