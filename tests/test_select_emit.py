"""`select random` records a reproducible run; `emit` writes it atomically with a manifest."""

from __future__ import annotations

import json

import datasets
import pytest

from curate.emit import emit
from curate.errors import CurateError
from curate.ingest import ingest
from curate.selectors import Pool, get_selector, run_selection
from curate.selectors.random import RandomSelector
from tests.conftest import count, write_jsonl

RECORDS = [{"prompt": f"question {i} — ünïcode", "completion": f"answer {i}"} for i in range(50)]


@pytest.fixture
def filled(store, tmp_path):
    ingest(store, [str(write_jsonl(tmp_path / "a.jsonl", RECORDS))], source="pool-a")
    ingest(store, [str(write_jsonl(tmp_path / "b.jsonl", RECORDS[:10]))], source="pool-b")
    return store


def test_random_selection_is_recorded_and_reproducible(filled):
    pool = Pool.from_store(filled)
    first = run_selection(filled, RandomSelector(seed=3), pool, 10)
    second = run_selection(filled, RandomSelector(seed=3), pool, 10)
    other = run_selection(filled, RandomSelector(seed=4), pool, 10)
    with filled.connect() as con:
        def picks(run):
            return con.execute("SELECT sample_id FROM selections WHERE run_id = ? ORDER BY rank", [run]).fetchall()
        assert picks(first) == picks(second) != picks(other)
        assert len(set(picks(first))) == 10
        kind, status, params, params_hash, counts = con.execute(
            "SELECT kind, status, params, params_hash, counts FROM runs WHERE run_id = ?", [first]).fetchone()
        second_hash = con.execute("SELECT params_hash FROM runs WHERE run_id = ?", [second]).fetchone()[0]
    assert (kind, status) == ("select:random", "completed")
    assert json.loads(params) == {"selector": "random", "seed": 3, "budget": 10, "where": None}
    assert params_hash == second_hash
    assert json.loads(counts) == {"pool": 50, "selected": 10, "dropped": 0}


def test_where_restricts_the_pool_and_bad_predicates_are_clear(filled):
    pool = Pool.from_store(filled, "prompt LIKE 'question 1%'")
    assert len(pool) == 11
    with pytest.raises(CurateError, match="--where"):
        Pool.from_store(filled, "no_such_column > 3")
    with pytest.raises(CurateError, match="single SQL predicate"):
        Pool.from_store(filled, "TRUE); DROP TABLE runs; SELECT (1")
    assert count(filled, "SELECT count(*) FROM runs") == 0


def test_failed_selection_marks_the_run_failed(filled):
    class Exploding(RandomSelector):
        name = "exploding"

        def select(self, pool, budget):
            raise ValueError("boom")

    with pytest.raises(ValueError):
        run_selection(filled, Exploding(), Pool.from_store(filled), 5)
    with filled.connect() as con:
        assert con.execute("SELECT status, error FROM runs").fetchone() == ("failed", "ValueError: boom")


def test_registry():
    assert get_selector("random") is RandomSelector
    with pytest.raises(CurateError, match="unknown selector"):
        get_selector("nope")


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "hf"])
def test_emit_round_trips_messages_exactly(filled, tmp_path, fmt):
    run = run_selection(filled, RandomSelector(seed=1), Pool.from_store(filled), 12)
    manifest = emit(filled, run, tmp_path / "out", fmt)
    with filled.connect() as con:
        expected = con.execute("SELECT s.sample_id, s.messages FROM selections sel JOIN samples s USING (sample_id) "
                               "WHERE run_id = ? ORDER BY rank", [run]).fetchall()
    if fmt == "hf":
        loaded = datasets.load_from_disk(str(tmp_path / "out" / "dataset"))
    else:
        name = {"jsonl": "train.jsonl", "parquet": "train.parquet"}[fmt]
        loaded = datasets.load_dataset("json" if fmt == "jsonl" else "parquet",
                                       data_files=str(tmp_path / "out" / name), split="train",
                                       cache_dir=str(tmp_path / "hf-cache"))
    assert [(r["sample_id"], r["messages"]) for r in loaded] == [(sid, msgs) for sid, msgs in expected]
    assert manifest["counts"]["written"] == 12 and manifest["run"]["run_id"] == run
    assert manifest["provenance"]["pool-a"] == 12 and manifest["provenance"].get("pool-b", 0) <= 10
    on_disk = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert on_disk["files"] == manifest["files"]
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


def test_emit_is_atomic(filled, tmp_path, monkeypatch):
    run = run_selection(filled, RandomSelector(seed=1), Pool.from_store(filled), 5)
    emit(filled, run, tmp_path / "out", "jsonl")
    before = (tmp_path / "out" / "train.jsonl").read_bytes()

    def failing_write(batches, path):
        path.write_text("half a file")
        raise OSError("disk full")

    monkeypatch.setattr("curate.emit._write_jsonl", failing_write)
    other = run_selection(filled, RandomSelector(seed=2), Pool.from_store(filled), 5)
    with pytest.raises(OSError):
        emit(filled, other, tmp_path / "out", "jsonl")
    assert (tmp_path / "out" / "train.jsonl").read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["manifest.json", "train.jsonl"]


def test_emit_unknown_or_failed_run(filled, tmp_path):
    with pytest.raises(CurateError, match="no run"):
        emit(filled, "random-nope", tmp_path)
