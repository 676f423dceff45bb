"""Ingest's fast path for flat JSON Lines (curate.ingest.flat) against the row path (every row
through its dialect's adapter): the same store, row for row, on real data and on awkward rows."""

from __future__ import annotations

import json

import orjson
import pytest

from curate.ingest import ingest
from curate.store import Store
from tests.conftest import crash_on_commit

AWKWARD_PROMPT_COMPLETION = [
    '{"prompt": "plain", "completion": "answer<|endoftext|>"}',
    '{"prompt": "first with meta", "completion": "then plain", "origin": "a"}',   # the first of two equal
    '{"prompt": "first with meta", "completion": "then plain"}',                  # samples keeps its meta
    '',                                                        # blank line
    '   ',
    '{"prompt": "trailing", "completion": "text  <|endoftext|>  \\n"}',
    '{"prompt": "eot only", "completion": "  <|endoftext|>"}',   # empty once the marker goes
    '{"prompt": "   ", "completion": "blank prompt"}',
    '{"prompt": null, "completion": "null prompt"}',
    '{"completion": "missing prompt"}',
    '{"prompt": "number", "completion": 5}',
    '{"prompt": "extra", "completion": "field", "source": "x", "n": 3}',   # meta
    '["a", "list"]',
    '{oops',
    '{"prompt": "e\\u0301clair NFD", "completion": "\\u00e9clair NFC"}',
    '{"prompt": "\\u001c\\u3000sep and ideographic space\\u00a0", "completion": "\\u2028ok\\u0085"}',
    '{"prompt": "plain", "completion": "answer<|endoftext|>"}',   # a duplicate within the block
    '{"prompt": "dup key", "prompt": "second wins", "completion": "c"}',
    '{"prompt": "emoji 😀", "completion": "中文 réponse"}',
    '{"prompt": "crlf", "completion": "line"}\r',
    '{"prompt": "last", "completion": "no newline at the end"}',
]

AWKWARD_ALPACA = [
    '{"instruction": "Add", "input": "2 and 3", "output": "5"}',
    '{"instruction": "No input", "output": "fine"}',
    '{"instruction": "Null input", "input": null, "output": "fine"}',
    '{"instruction": "Blank input", "input": "  ", "output": "fine"}',
    '{"instruction": "System", "input": "", "output": "x", "system": "be brief"}',
    '{"instruction": "History", "input": "", "output": "x", "history": [["hi", "hello"]]}',
    '{"instruction": "", "input": "empty instruction", "output": "x"}',
    '{"instruction": "Empty output", "input": "", "output": ""}',
    '{"instruction": 7, "output": "typed"}',
    '',
    '{"instruction": "Add", "input": "2 and 3", "output": "5"}',
]

AWKWARD_MESSAGES = [
    '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}',
    ('{"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "q"}, '
     '{"role": "assistant", "content": "a"}, {"role": "user", "content": "more"}, {"role": "assistant", "content": "b"}]}'),
    ('{"messages": [{"role": "system", "content": "  "}, {"role": "user", "content": "blank system dropped"}, '
     '{"role": "assistant", "content": "ok"}]}'),
    '{"messages": [{"role": "human", "content": "alias role"}, {"role": "gpt", "content": "via adapter"}]}',
    '{"messages": [{"role": "User", "content": "capitalised role"}, {"role": "assistant", "content": "x"}]}',
    ('{"messages": [{"role": "user", "content": [{"type": "text", "text": "text "}, {"type": "text", "text": "parts"}]}, '
     '{"role": "assistant", "content": "joined"}]}'),
    '{"messages": [{"role": "user", "content": "extra key", "name": "bob"}, {"role": "assistant", "content": "x"}]}',
    '{"messages": [{"role": "user", "content": "meta"}, {"role": "assistant", "content": "x"}], "id": 7}',
    '{"messages": [{"role": "assistant", "content": "answer first"}, {"role": "user", "content": "then question"}]}',
    '{"messages": [{"role": "user", "content": "no answer"}]}',
    '{"messages": [{"role": "user", "content": "empty answer"}, {"role": "assistant", "content": " "}]}',
    '{"messages": [{"role": "user", "content": null}, {"role": "assistant", "content": "null content"}]}',
    '{"messages": [{"role": "robot", "content": "unknown role"}, {"role": "assistant", "content": "x"}]}',
    '{"messages": [["user", "a list"], {"role": "assistant", "content": "x"}]}',
    '{"messages": []}',
    '{"messages": "a string"}',
    '{"messages": null}',
    ('{"messages": [{"role": "user", "content": "tool turn"}, {"role": "assistant", "content": "call"}, '
     '{"role": "tool", "content": "result"}, {"role": "assistant", "content": "done"}]}'),
    '{"messages": [{"role": "user", "content": "e\\u0301clair NFD "}, {"role": "assistant", "content": "\\u00e9clair"}]}',
    '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}',   # duplicate
    '{"messages": [{"content": "no role"}, {"role": "assistant", "content": "x"}]}',
]

AWKWARD_SHAREGPT = [
    '{"id": "a", "conversations": [{"from": "human", "value": "hi there"}, {"from": "gpt", "value": "hello"}]}',
    ('{"conversations": [{"role": "user", "content": "role/content"}, {"role": "assistant", "content": "a"}, '
     '{"from": "human", "value": "mixed"}, {"from": "gpt", "value": "b"}], "system": "be brief"}'),
    '{"conversations": [{"from": "human", "value": "blank system"}, {"from": "gpt", "value": "ok"}], "system": "  "}',
    '{"conversations": [{"from": "human", "value": "empty system"}, {"from": "gpt", "value": "ok"}], "system": ""}',
    '{"conversations": [{"from": "human", "value": "null system"}, {"from": "gpt", "value": "ok"}], "system": null}',
    '{"conversations": [{"from": "human", "value": "typed system"}, {"from": "gpt", "value": "x"}], "system": 3}',
    '{"conversations": [{"from": "Human", "value": "capitalised role"}, {"from": "GPT", "value": "via adapter"}]}',
    '{"conversations": [{"from": " human", "value": "spaced role"}, {"from": "gpt", "value": "via adapter"}]}',
    '{"conversations": [{"from": "human", "value": "extra key", "weight": 0}, {"from": "gpt", "value": "x"}]}',
    '{"conversations": [{"from": "human"}, {"from": "gpt", "value": "missing value"}]}',
    '{"conversations": [{"from": "human", "value": null}, {"from": "gpt", "value": "null value"}]}',
    '{"conversations": [{"from": "robot", "value": "unknown role"}, {"from": "gpt", "value": "x"}]}',
    '{"conversations": [{"from": "gpt", "value": "answer first"}, {"from": "human", "value": "then question"}]}',
    '{"conversations": [{"from": "human", "value": "no answer"}]}',
    '{"conversations": [{"from": "human", "value": "empty answer"}, {"from": "gpt", "value": "  "}]}',
    '{"conversations": [{"speaker": "human", "text": "other keys"}, {"from": "gpt", "value": "x"}]}',
    '{"conversations": []}',
    '{"conversations": "a string"}',
    ('{"conversations": [{"from": "system", "value": "sys turn"}, {"from": "human", "value": "q"}, '
     '{"from": "gpt", "value": "a"}, {"from": "observation", "value": "tool"}, {"from": "gpt", "value": "done"}], '
     '"source": {"nested": [1, 2]}}'),
    '{"conversations": [{"from": "human", "value": "e\\u0301clair NFD "}, {"from": "gpt", "value": "\\u00e9clair"}]}',
    '{"id": "b", "conversations": [{"from": "human", "value": "hi there"}, {"from": "gpt", "value": "hello"}]}',  # duplicate
]

AWKWARD_LIMA = [
    '{"conversations": ["q", "a"], "source": "stackexchange"}',
    '{"conversations": ["q1", "a1", "q2", "a2"]}',
    '{"conversations": ["q", "a", "trailing user turn"]}',
    '{"conversations": ["q", "  "]}',
    '{"conversations": ["only a question"]}',
    '{"conversations": ["q", 2]}',
    '{"conversations": [null, "a"]}',
    '{"conversations": []}',
    '{"conversations": ["  e\\u0301clair ", "\\u00e9clair"], "source": "nfd"}',
    '{"conversations": ["q", "a"], "source": "again"}',   # duplicate: the first keeps its meta
]

STORED = {
    "samples_base": "SELECT sample_id, kind, messages, gold_answer, meta FROM samples_base ORDER BY sample_id",
    "sample_sources": "SELECT sample_id, source_id, row_number FROM sample_sources ORDER BY source_id, row_number",
    "quarantine": "SELECT source_id, row_number, field, reason, raw FROM quarantine ORDER BY source_id, row_number",
    "sources": "SELECT source_id, dialect, status, rows_read, rows_new, rows_duplicate, rows_quarantined, "
               "watermark FROM sources ORDER BY source_id",
}


def stored(store: Store) -> dict[str, list]:
    with store.connect() as con:
        return {table: con.execute(sql).fetchall() for table, sql in STORED.items()}


def both_ways(tmp_path, paths: list[str], **options) -> tuple[dict, dict]:
    fast, rows = Store(tmp_path / "fast.duckdb"), Store(tmp_path / "rows.duckdb")
    ingest(fast, paths, fast=True, **options)
    ingest(rows, paths, fast=False, **options)
    return stored(fast), stored(rows)


def rows_through_adapter(monkeypatch) -> list:
    """The rows the fast path hands to the adapter from now on (filled as ingests run)."""
    from curate.ingest import flat

    rows_seen = []
    real_map_rows = flat.map_rows
    monkeypatch.setattr(flat, "map_rows", lambda batch, source_id, rows, *rest: (
        rows_seen.extend(rows), real_map_rows(batch, source_id, rows, *rest)))
    return rows_seen


def write_lines(path, lines: list[str]) -> str:
    path.write_bytes(("\n".join(lines)).encode())
    return str(path)


@pytest.mark.parametrize("block_bytes", [1 << 24, 200])
def test_awkward_rows_land_the_same_both_ways(tmp_path, monkeypatch, block_bytes):
    monkeypatch.setattr("curate.ingest.readers.BATCH_BYTES", block_bytes)   # 200: many small blocks
    through_adapter = rows_through_adapter(monkeypatch)
    awkward = {"pc": AWKWARD_PROMPT_COMPLETION, "alpaca": AWKWARD_ALPACA, "messages": AWKWARD_MESSAGES,
               "sharegpt": AWKWARD_SHAREGPT, "lima": AWKWARD_LIMA}
    paths = [write_lines(tmp_path / f"{name}.jsonl", lines) for name, lines in awkward.items()]
    fast, rows = both_ways(tmp_path, paths)
    assert fast == rows
    # the fast path took the plain rows (meta or not); only the others went through the adapter
    non_blank = sum(1 for lines in awkward.values() for line in lines if line.strip())
    assert len(fast["quarantine"]) <= len(through_adapter) < non_blank - 35
    assert {row.record["conversations"][0]["value"] for row in through_adapter
            if row.record and "conversations" in row.record and row.record["conversations"]
            and isinstance(row.record["conversations"][0], dict) and "value" in row.record["conversations"][0]
            } >= {"capitalised role", "spaced role", "extra key"}
    # the cases are what they claim: some rows land, some are quarantined, some carry meta
    assert len(fast["samples_base"]) >= 25 and len(fast["quarantine"]) >= 25
    metas = [json.loads(meta) for *_, meta in fast["samples_base"] if meta]
    assert {"source": "x", "n": 3} in metas and {"origin": "a"} in metas and {"id": 7} in metas
    assert {"id": "a"} in metas and {"source": {"nested": [1, 2]}} in metas and {"source": "stackexchange"} in metas


def test_real_t0_and_alpaca_land_the_same_both_ways(tmp_path, shared_data, monkeypatch):
    t0 = sorted((shared_data / "instruct" / "t0_train_50k").glob("*.jsonl"))[:40]
    alpaca = shared_data / "instruct" / "alpaca_zh_10000.json"   # one JSON array: streamed, fast path too
    through_adapter = rows_through_adapter(monkeypatch)
    fast, rows = both_ways(tmp_path, [*map(str, t0), str(alpaca)])
    assert fast == rows
    assert len(fast["samples_base"]) > 5000
    assert len(through_adapter) == len(fast["quarantine"])   # every good row took the fast path
    assert any(source_id for source_id, dialect, *_ in fast["sources"] if dialect == "alpaca")


def test_real_lima_and_sharegpt_land_the_same_both_ways(tmp_path, shared_data, monkeypatch):
    # LIMA train as shipped (each record has a `source`: meta); the ShareGPT sample as shipped (one
    # JSON array, each record with an `id`) and written out as JSON Lines: the same samples again.
    sharegpt = orjson.loads((shared_data / "instruct" / "sharegpt_dummy.json").read_bytes())
    sharegpt_lines = write_lines(tmp_path / "sharegpt.jsonl", [orjson.dumps(r).decode() for r in sharegpt])
    through_adapter = rows_through_adapter(monkeypatch)
    fast, rows = both_ways(tmp_path, [str(shared_data / "instruct" / "lima_train.jsonl"), sharegpt_lines,
                                      str(shared_data / "instruct" / "sharegpt_dummy.json")])
    assert fast == rows
    assert len(fast["samples_base"]) > 1000
    assert len(through_adapter) == len(fast["quarantine"]) < 10   # every good row took the fast path
    metas = [json.loads(meta) for *_, meta in fast["samples_base"] if meta]
    assert sum("source" in meta for meta in metas) > 900 and sum("id" in meta for meta in metas) > 5


def test_real_lima_as_messages_lands_the_same_both_ways(tmp_path, shared_data):
    # LIMA's alternating conversations, written as OpenAI messages (a system turn on every other one)
    lines = []
    for index, line in enumerate((shared_data / "instruct" / "lima_train.jsonl").read_bytes().splitlines()):
        turns = orjson.loads(line)["conversations"]
        messages = [{"role": ("user", "assistant")[i % 2], "content": text} for i, text in enumerate(turns)]
        if index % 2:
            messages.insert(0, {"role": "system", "content": "You are a helpful assistant."})
        lines.append(orjson.dumps({"messages": messages}).decode())
    fast, rows = both_ways(tmp_path, [write_lines(tmp_path / "lima_messages.jsonl", lines)])
    assert fast == rows
    assert len(fast["samples_base"]) > 1000
    assert max(len(messages) for _, _, messages, *_ in fast["samples_base"]) > 3   # multi-turn ones too


def test_resumed_inside_a_block_the_fast_path_starts_after_the_watermark(tmp_path, monkeypatch):
    from curate.ingest import writer

    records = [{"prompt": f"p{i}", "completion": f"c{i}"} for i in range(300)]
    lines = [json.dumps(r) for r in records]
    lines[120:120] = ["", "{broken"]                  # a blank line and a bad one mid-file
    path = write_lines(tmp_path / "big.jsonl", lines + [""])
    monkeypatch.setattr("curate.ingest.BATCH_ROWS", 70)
    monkeypatch.setattr("curate.ingest.readers.BATCH_BYTES", 1500)   # blocks end off batch boundaries
    store = Store(tmp_path / "resumed.duckdb")
    crash_on_commit(monkeypatch, 3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        ingest(store, [path])
    monkeypatch.setattr("curate.ingest.commit", writer.commit)
    ingest(store, [path])
    reference = Store(tmp_path / "reference.duckdb")
    ingest(reference, [path], fast=False)
    assert stored(store) == stored(reference)


def test_a_pretty_printed_json_array_lands_the_same_both_ways(tmp_path, monkeypatch):
    records = [json.loads(line) for line in AWKWARD_SHAREGPT] + [7, "text", None, [1, 2], {}]
    path = tmp_path / "sharegpt.json"
    path.write_text(json.dumps(records, indent=2, ensure_ascii=False))   # elements span lines
    through_adapter = rows_through_adapter(monkeypatch)
    fast, rows = both_ways(tmp_path, [str(path)])
    assert fast == rows
    assert len(fast["quarantine"]) == len(through_adapter) - 3 >= 15   # capitalised, spaced roles, extra key land
    assert [row for _, row, *_ in fast["quarantine"]][-5:] == list(range(len(records) - 4, len(records) + 1))


def test_a_json_array_resumed_after_a_crash_lands_as_in_one_go(tmp_path, monkeypatch):
    from curate.ingest import writer

    records = [{"conversations": [f"q{i}", f"a{i}"], "source": i % 3} for i in range(300)]
    records[100:100] = [{"conversations": ["q", 5]}, 42]    # two bad elements mid-array
    path = tmp_path / "lima.json"
    path.write_text(json.dumps(records))
    monkeypatch.setattr("curate.ingest.BATCH_ROWS", 70)
    monkeypatch.setattr("curate.ingest.readers.BATCH_ROWS", 45)   # chunks end off batch boundaries
    store = Store(tmp_path / "resumed.duckdb")
    crash_on_commit(monkeypatch, 3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        ingest(store, [str(path)])
    monkeypatch.setattr("curate.ingest.commit", writer.commit)
    ingest(store, [str(path)])
    reference = Store(tmp_path / "reference.duckdb")
    ingest(reference, [str(path)], fast=False)
    assert stored(store) == stored(reference)
    assert len(stored(store)["samples_base"]) == 300
