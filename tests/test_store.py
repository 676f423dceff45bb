"""The store: migrations upgrade in place; `sql` is read-only and reaches nothing outside the store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import duckdb
import pyarrow.parquet as pq
import pytest

from curate.errors import CurateError
from curate.ingest import ingest
from curate.store import migrations
from curate.store.audit import run_sql, stats
from tests.conftest import count, write_jsonl


def test_fresh_store_has_every_core_table_and_version(store):
    assert store.schema_version() == max(m.version for m in migrations.available())
    tables = {r["table_name"] for r in run_sql(store, "SELECT table_name FROM information_schema.tables").to_pylist()}
    assert {"sources", "samples", "sample_sources", "quarantine", "labels", "scores", "runs",
            "selections", "schema_version"} <= tables


def test_older_store_is_upgraded_in_place(store, monkeypatch):
    core = migrations.available()
    monkeypatch.setattr(migrations, "available", lambda: core[:1])
    with store.connect() as con:
        con.execute("INSERT INTO runs (run_id, kind, params, params_hash, code_version, status, started_at) "
                    "VALUES ('r1', 'test', '{}', 'h', 'v', 'completed', now())")
    extra = migrations.Migration(9999, "add_note", "ALTER TABLE runs ADD COLUMN note VARCHAR DEFAULT 'n/a';")
    monkeypatch.setattr(migrations, "available", lambda: core[:1] + [extra])
    store._migrated = False   # a new process opening the old file
    with store.connect() as con:
        assert con.execute("SELECT run_id, note FROM runs").fetchall() == [("r1", "n/a")]
        assert con.execute("SELECT max(version) FROM schema_version").fetchone()[0] == 9999
    assert store.schema_version() == 9999


def test_a_missing_lower_version_is_still_applied(store, monkeypatch):
    core = migrations.available()
    monkeypatch.setattr(migrations, "available", lambda: [core[0]] + [m for m in core[2:]])
    store.schema_version()                       # a build without migration 2
    monkeypatch.setattr(migrations, "available", lambda: core)
    store._migrated = False
    with store.connect() as con:
        assert migrations.applied_versions(con) == {m.version for m in core}
        assert con.execute("SELECT count(*) FROM embeddings").fetchall() == [(0,)]


def test_connections_carry_no_half_read_result(store):
    with store.transaction() as con:
        con.execute("CREATE TABLE t AS SELECT range AS x FROM range(5)")
        con.execute("SELECT x FROM t").fetchone()          # leaves a result half read
    with store.session():
        with store.transaction() as con:
            con.execute("SELECT x FROM t").fetchone()
        with store.connect() as con:
            assert con.sql("SELECT count(*) FROM t").fetchall() == [(5,)]
    assert store.query("SELECT count(*) AS n FROM t").to_pylist() == [{"n": 5}]


def test_failed_migration_rolls_back(store, monkeypatch):
    core = migrations.available()
    store.schema_version()
    broken = migrations.Migration(9998, "broken", "CREATE TABLE half (a INT); SELECT * FROM no_such_table;")
    monkeypatch.setattr(migrations, "available", lambda: core + [broken])
    store._migrated = False
    with pytest.raises(duckdb.Error):
        store.schema_version()
    monkeypatch.setattr(migrations, "available", lambda: core)
    with store.connect() as con:
        assert con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name='half'").fetchone()[0] == 0


@pytest.mark.parametrize("query, message", [
    ("DROP TABLE samples_base", "read-only"),
    ("DELETE FROM runs", "read-only"),
    ("INSERT INTO labels VALUES ('a', 'b', 'c')", "read-only"),
    ("CREATE TABLE x (a INT)", "read-only"),
    ("SELECT * FROM read_csv('/etc/passwd')", "cannot read or write files"),
    ("SELECT * FROM '/etc/passwd'", "does not exist"),   # no file lookup is even attempted
    ("ATTACH '/tmp/other.duckdb' AS other", "cannot read or write files"),
    ("COPY samples_base TO '/tmp/leak.csv'", "cannot read or write files"),
    ("INSTALL httpfs", "cannot read or write files"),
    ("SET enable_external_access = true", "locked"),
    ("SELECT 1; DROP TABLE runs", "read-only"),
])
def test_sql_refuses_writes_and_external_access(store, tmp_path, query, message):
    ingest(store, [str(write_jsonl(tmp_path / "a.jsonl", [{"prompt": "p", "completion": "c"}]))])
    with pytest.raises(CurateError, match=message):
        run_sql(store, query)
    assert count(store, "SELECT count(*) FROM samples") == 1
    assert count(store, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'runs'") == 1
    assert not os.path.exists("/tmp/leak.csv")


def test_sql_on_missing_store_is_a_clear_error(tmp_path):
    from curate.store import Store
    with pytest.raises(CurateError, match="no such store"):
        run_sql(Store(tmp_path / "nope.duckdb"), "SELECT 1")


def test_stats(store, tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"prompt": "p", "completion": "c"}, {"prompt": "p"}])
    ingest(store, [str(path)])
    result = stats(store)
    assert result["sources"].to_pylist()[0]["quarantined"] == 1
    assert result["kinds"].to_pylist() == [{"kind": "instruction", "samples": 1}]
    assert result["quarantine"].to_pylist()[0]["reason"] == "completion: missing"


def test_reader_waits_for_a_writer_in_another_process(store, tmp_path):
    """An audit opened while another process holds the file waits for it instead of failing."""
    ingest(store, [str(write_jsonl(tmp_path / "a.jsonl", [{"prompt": "p", "completion": "c"}]))])
    holder = subprocess.Popen([sys.executable, "-c", (
        "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); print('held', flush=True); "
        "time.sleep(1.5); con.close()"), store.path], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    started = time.monotonic()
    assert run_sql(store, "SELECT count(*) AS n FROM samples").to_pylist() == [{"n": 1}]
    assert time.monotonic() - started > 0.5
    holder.wait(timeout=10)


def test_sql_formats(cli, store, tmp_path):
    ingest(store, [str(write_jsonl(tmp_path / "a.jsonl", [{"prompt": "p", "completion": "c"}]))])
    query = "SELECT prompt, turns FROM samples"
    assert cli("sql", query, "--format", "csv").stdout.splitlines()[:2] == ['"prompt","turns"', '"p",1']
    assert json.loads(cli("sql", query, "--format", "json").stdout.strip()) == {"prompt": "p", "turns": 1}
    cli("sql", query, "--format", "parquet", "--out", tmp_path / "out.parquet")
    assert pq.read_table(tmp_path / "out.parquet").to_pylist() == [{"prompt": "p", "turns": 1}]
    assert "needs --out" in cli("sql", query, "--format", "parquet", expect=1).stderr
    assert "p" in cli("sql", query).stdout
    assert "read-only" in cli("sql", "DROP TABLE runs", expect=1).stderr
    nested = "SELECT messages, sum(turns) AS total FROM samples GROUP BY messages"
    assert cli("sql", nested, "--format", "csv").stdout.splitlines()[1].startswith('"[{""role"":""user""')
    assert json.loads(cli("sql", nested, "--format", "json").stdout)["total"] == 1
