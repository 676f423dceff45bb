"""Integration on the real public data under ../shared/data (skipped where it is absent)."""

from __future__ import annotations

import datasets
import pytest

from curate.emit import emit
from curate.errors import CurateError
from curate.ingest import ingest
from curate.selectors import Pool, run_selection
from curate.selectors.random import RandomSelector
from curate.store.audit import run_sql
from tests.conftest import count


def test_instruction_sets_land_with_exact_counts(store, shared_data):
    instruct = shared_data / "instruct"
    reports = ingest(store, [str(instruct / "lima_train.jsonl"), str(instruct / "sharegpt_dummy.json"),
                             str(instruct / "alpaca_zh_10000.json"), str(instruct / "t0_train_50k"),
                             str(shared_data / "mig" / "example.jsonl")])
    by_name: dict[str, list] = {}
    for report in reports:
        by_name.setdefault(report.name, []).append(report)
    rows = {name: sum(r.counts.read for r in group) for name, group in by_name.items()}
    assert rows == {"lima_train": 1030, "sharegpt_dummy": 500, "alpaca_zh_10000": 2000,
                    "t0_train_50k": 47178, "example": 10}
    assert len(by_name["t0_train_50k"]) == 252
    assert {r.dialect for r in by_name["t0_train_50k"] if r.status != "empty"} == {"prompt-completion"}
    assert [r.dialect for r in by_name["lima_train"]] == ["lima"]
    assert [r.dialect for r in by_name["sharegpt_dummy"]] == ["sharegpt"]
    assert [r.dialect for r in by_name["alpaca_zh_10000"]] == ["alpaca"]

    (mig,) = by_name["example"]
    assert (mig.dialect, mig.counts.new, mig.counts.quarantined) == ("mig-pool", 9, 1)
    with store.connect() as con:
        row, reason = con.execute("SELECT q.row_number, q.reason FROM quarantine q JOIN sources USING (source_id) "
                                  "WHERE name = 'example'").fetchone()
        assert row == 3 and reason.startswith("invalid JSON")
        assert con.execute("SELECT count(DISTINCT sample_id) FROM labels WHERE origin = 'instag'").fetchone()[0] == 9
        assert con.execute("SELECT count(*) FROM scores WHERE scorer = 'deita'").fetchone()[0] == 9
        # T0's only quarantined rows are real empty targets (six TREC templates)
        reasons = con.execute("SELECT reason, count(*) FROM quarantine q JOIN sources USING (source_id) "
                              "WHERE name = 't0_train_50k' GROUP BY 1").fetchall()
        assert reasons == [("completion: is empty once <|endoftext|> is removed", 1200)]
        # every good row has provenance, once
        good = con.execute("SELECT sum(rows_read - rows_quarantined) FROM sources").fetchone()[0]
        assert con.execute("SELECT count(*) FROM sample_sources").fetchone()[0] == good
        # the Chinese text round-trips unchanged
        first_zh = con.execute("SELECT prompt FROM samples WHERE prompt LIKE '介绍一下中国平安%'").fetchone()[0]
        assert first_zh == "介绍一下中国平安保险集团."

    total = count(store, "SELECT count(*) FROM samples")
    again = ingest(store, [str(instruct / "lima_train.jsonl"), str(instruct / "t0_train_50k"),
                           str(shared_data / "mig" / "example.jsonl")])
    assert {r.status for r in again} <= {"unchanged", "empty"}
    assert count(store, "SELECT count(*) FROM samples") == total

    with pytest.raises(CurateError, match="read-only"):
        run_sql(store, "DROP TABLE samples_base")
    with pytest.raises(CurateError, match="cannot read or write files"):
        run_sql(store, f"SELECT * FROM read_json('{instruct / 'lima_train.jsonl'}')")
    assert count(store, "SELECT count(*) FROM samples") == total


def test_math_sets_store_gold_answers(store, shared_data):
    ingest(store, [str(shared_data / "math" / "gsm8k_test.jsonl"), str(shared_data / "math" / "math500_test.jsonl"),
                   str(shared_data / "math" / "math_test_5000.jsonl")])
    with store.connect() as con:
        by_dialect = dict(con.execute(
            "SELECT dialect, sum(rows_read - rows_quarantined) FROM sources GROUP BY 1").fetchall())
        assert by_dialect == {"gsm8k": 1319, "math": 5500}
        assert con.execute("SELECT count(*) FROM samples WHERE gold_answer IS NULL").fetchone()[0] == 0
        gold = con.execute("SELECT gold_answer FROM samples WHERE prompt LIKE 'Janet%ducks lay 16 eggs%'").fetchone()
        assert gold == ("18",)


def test_emit_then_load_dataset_round_trips(store, shared_data, tmp_path):
    ingest(store, [str(shared_data / "instruct" / "sharegpt_dummy.json"), str(shared_data / "instruct" / "lima_train.jsonl")])
    run = run_selection(store, RandomSelector(seed=7), Pool.from_store(store), 200)
    emit(store, run, tmp_path / "out")
    loaded = datasets.load_dataset("json", data_files=str(tmp_path / "out" / "train.jsonl"), split="train",
                                   cache_dir=str(tmp_path / "cache"))
    with store.connect() as con:
        expected = con.execute("SELECT s.messages FROM selections JOIN samples s USING (sample_id) "
                               "WHERE run_id = ? ORDER BY rank", [run]).fetchall()
    assert [r["messages"] for r in loaded] == [m for (m,) in expected]
    assert all(m["role"] in ("system", "user", "assistant") for r in loaded for m in r["messages"])
