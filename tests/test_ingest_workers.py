"""Ingest's fast path in worker processes (curate.ingest.workers) against the same rows mapped in one
process and through the adapter: the store must end up the same, table by table."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from curate.ingest import ingest
from curate.ingest.readers import line_start
from curate.ingest.workers import MapperPool
from curate.store import Store
from tests.conftest import crash_on_commit
from tests.test_ingest_flat import (
    AWKWARD_ALPACA,
    AWKWARD_LIMA,
    AWKWARD_MESSAGES,
    AWKWARD_PROMPT_COMPLETION,
    AWKWARD_SHAREGPT,
    stored,
    write_lines,
)


@pytest.fixture
def small_pieces(monkeypatch) -> list:
    """Workers for any input, in pieces of about 300 bytes; returns the pieces merged (filled as
    ingests run)."""
    monkeypatch.setattr("curate.ingest.POOL_MIN_BYTES", 0)
    monkeypatch.setattr("curate.ingest.workers.PIECE_BYTES", 300)
    merged = []
    real_result = MapperPool.result

    def result(pool, future):
        merged.append(real_result(pool, future))
        return merged[-1]

    monkeypatch.setattr(MapperPool, "result", result)
    return merged


def three_ways(tmp_path, paths: list[str]) -> tuple[dict, dict, dict]:
    """The store after ingesting `paths` with two workers, in one process, and through the adapter."""
    results = []
    for name, options in [("workers", {"workers": 2}), ("one", {"workers": 1}), ("adapter", {"fast": False})]:
        store = Store(tmp_path / f"{name}.duckdb")
        ingest(store, paths, **options)
        results.append(stored(store))
    return tuple(results)


def test_awkward_rows_land_the_same_through_workers(tmp_path, small_pieces):
    awkward = {"pc": AWKWARD_PROMPT_COMPLETION, "alpaca": AWKWARD_ALPACA, "messages": AWKWARD_MESSAGES,
               "sharegpt": AWKWARD_SHAREGPT, "lima": AWKWARD_LIMA}
    # each file twice over, with blank lines: duplicates across pieces, row numbers past the first piece
    paths = [write_lines(tmp_path / f"{name}.jsonl", lines + ["", "  "] + lines) for name, lines in awkward.items()]
    workers, one, adapter = three_ways(tmp_path, paths)
    assert workers == one == adapter
    assert len(small_pieces) > 3 * len(paths)               # files were cut into many pieces
    assert len(workers["quarantine"]) >= 50 and len(workers["samples_base"]) >= 25
    rows_numbers = [row for _, row, *_ in workers["quarantine"]]
    assert max(rows_numbers) > max(map(len, awkward.values())) + 2   # numbered past a piece's start


def test_real_t0_lands_the_same_through_workers(tmp_path, shared_data, monkeypatch):
    monkeypatch.setattr("curate.ingest.POOL_MIN_BYTES", 0)
    monkeypatch.setattr("curate.ingest.workers.PIECE_BYTES", 64 << 10)   # several pieces per file
    monkeypatch.setattr("curate.ingest.BATCH_ROWS", 3000)              # batches end mid-piece
    t0 = sorted((shared_data / "instruct" / "t0_train_50k").glob("*.jsonl"))[:30]
    workers, one, adapter = three_ways(tmp_path, [*map(str, t0), str(shared_data / "instruct" / "lima_train.jsonl")])
    assert workers == one == adapter
    assert len(workers["samples_base"]) > 5000
    assert all(status == "complete" for _, _, status, *_ in workers["sources"])


def test_batches_of_long_samples_end_on_bytes_and_land_the_same(tmp_path, shared_data, monkeypatch):
    from curate.ingest import writer

    bound, chunk = 256 << 10, 32 << 10
    monkeypatch.setattr("curate.ingest.POOL_MIN_BYTES", 0)
    monkeypatch.setattr("curate.ingest.workers.PIECE_BYTES", chunk)     # pieces of 32 KB
    monkeypatch.setattr("curate.ingest.readers.BATCH_BYTES", chunk)     # blocks of 32 KB in-process
    monkeypatch.setattr("curate.ingest.BATCH_SAMPLE_BYTES", bound)
    committed = []   # (rows, sample bytes) of each batch committed

    def recording_commit(con, batch):
        committed.append((batch.rows, batch.sample_bytes))
        return writer.commit(con, batch)

    monkeypatch.setattr("curate.ingest.commit", recording_commit)
    lima = shared_data / "instruct" / "lima_train.jsonl"    # 1,030 rows in 3 MB: long answers
    workers, one, adapter = three_ways(tmp_path, [str(lima)])
    assert workers == one == adapter
    assert len(workers["samples_base"]) > 1000
    # each way's batches end once their samples pass the bound (the last chunk added may overshoot it),
    # long before BATCH_ROWS rows
    assert len(committed) >= 3 * lima.stat().st_size // (bound + 2 * chunk)
    assert all(rows < 400 and sample_bytes < bound + 2 * chunk for rows, sample_bytes in committed)
    assert sum(sample_bytes for _, sample_bytes in committed) > 3 * 0.8 * lima.stat().st_size


def test_a_crash_with_workers_resumes_mid_file_and_lands_as_in_one_go(tmp_path, monkeypatch, small_pieces):
    from curate.ingest import writer

    records = [{"prompt": f"p{i}", "completion": f"c{i}"} for i in range(300)]
    lines = [json.dumps(r) for r in records]
    lines[120:120] = ["", "{broken"]
    path = write_lines(tmp_path / "big.jsonl", lines + [""])
    monkeypatch.setattr("curate.ingest.BATCH_ROWS", 70)
    store = Store(tmp_path / "resumed.duckdb")
    crash_on_commit(monkeypatch, 3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        ingest(store, [path], workers=2)
    with store.connect() as con:
        watermark = con.execute("SELECT watermark FROM sources").fetchone()[0]
    assert 0 < watermark < 300
    monkeypatch.setattr("curate.ingest.commit", writer.commit)
    ingest(store, [path], workers=2)
    reference = Store(tmp_path / "reference.duckdb")
    ingest(reference, [path], fast=False)
    assert stored(store) == stored(reference)


def test_an_input_that_fails_in_a_worker_is_reported_and_the_others_land(tmp_path, monkeypatch, small_pieces):
    import curate.ingest

    good = write_lines(tmp_path / "good.jsonl", [json.dumps({"prompt": f"p{i}", "completion": "c"}) for i in range(50)])
    doomed = write_lines(tmp_path / "doomed.jsonl", [json.dumps({"prompt": f"q{i}", "completion": "c"}) for i in range(50)])
    real_pieces = curate.ingest.pieces

    def pieces_of_a_vanished_file(path, uri, *rest):
        for index, piece in enumerate(real_pieces(path, uri, *rest)):   # the file is gone after its second piece
            yield piece if path == good or index < 2 else dataclasses.replace(piece, path=str(tmp_path / "gone"))

    monkeypatch.setattr(curate.ingest, "pieces", pieces_of_a_vanished_file)
    store = Store(tmp_path / "store.duckdb")
    reports = {report.uri: report for report in ingest(store, [doomed, good], workers=2)}
    assert reports[doomed].status == "error" and "cannot read" in reports[doomed].error
    assert reports[good].status == "ingested" and reports[good].counts.new == 50
    with store.connect() as con:
        sources = dict(con.execute("SELECT uri, status FROM sources").fetchall())
        landed = dict(con.execute("SELECT s.uri, count(*) FROM sample_sources p JOIN sources s USING (source_id) "
                                  "GROUP BY 1").fetchall())
    assert sources == {doomed: "partial", good: "complete"}
    assert 0 < landed[doomed] < 50 and landed[good] == 50   # the doomed file's first pieces landed


def test_line_start(tmp_path):
    path = tmp_path / "lines.jsonl"
    path.write_bytes(b"a\n\nbc\n  \nlast")
    assert [line_start(str(path), n) for n in range(7)] == [0, 2, 3, 6, 9, 13, 13]


def test_workers_exit_and_remove_the_spool_when_the_process_that_started_them_is_killed(tmp_path):
    script = textwrap.dedent("""
        import os, sys, time
        from curate.ingest.workers import MapperPool

        if __name__ == "__main__":
            with MapperPool(2) as pool:
                pids = {pool._executor.submit(os.getpid).result() for _ in range(20)}
                print(pool._spool, " ".join(map(str, pids)), flush=True)
                time.sleep(60)
    """)
    (tmp_path / "starter.py").write_text(script)
    starter = subprocess.Popen([sys.executable, str(tmp_path / "starter.py")], stdout=subprocess.PIPE, text=True,
                               cwd=os.getcwd(), env={**os.environ, "PYTHONPATH": os.getcwd()})
    spool, *worker_pids = starter.stdout.readline().split()
    worker_pids = [int(pid) for pid in worker_pids]
    assert worker_pids and starter.pid not in worker_pids and os.path.isdir(spool)
    starter.send_signal(signal.SIGKILL)
    starter.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(pid) for pid in worker_pids):
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in worker_pids)
    assert not os.path.exists(spool)     # the workers took the spool folder with them


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"   # a zombie has exited
    except FileNotFoundError:
        return False
