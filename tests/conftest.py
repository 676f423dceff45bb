"""Shared fixtures: a fresh store per test, the real data under ../shared/data, and a CLI runner."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from pathlib import Path

# Prefect keeps its local API database under PREFECT_HOME: tests get their own, never ~/.prefect,
# removed at exit (after Prefect's own exit hook, registered later, has stopped its server).
if "PREFECT_HOME" not in os.environ:
    os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="curate-tests-prefect-")
    atexit.register(shutil.rmtree, os.environ["PREFECT_HOME"], ignore_errors=True)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
# Prefect logs "stopping temporary server" at exit, after pytest has closed the streams: keep it quiet.
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import pytest
from typer.testing import CliRunner

from curate.cli import app
from curate.store import Store

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(tmp_path / "curate.duckdb")


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not available: {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture
def cli(store):
    """Run `curate --db <the test's store> ARGS...`; returns the click Result."""
    runner = CliRunner()

    def invoke(*args: str, expect: int | None = 0):
        result = runner.invoke(app, ["--db", store.path, *map(str, args)], catch_exceptions=False)
        if expect is not None:
            assert result.exit_code == expect, f"exit {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        return result

    return invoke


def write_jsonl(path: Path, records: list, raw_lines: dict[int, str] | None = None) -> Path:
    """Write records as JSON Lines; `raw_lines` puts literal text at given 1-based line numbers."""
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    for number, text in sorted((raw_lines or {}).items()):
        lines.insert(number - 1, text)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def count(store: Store, sql: str, params: list | None = None) -> int:
    with store.connect() as con:
        return con.execute(sql, params or []).fetchone()[0]


def crash_on_commit(monkeypatch, nth: int) -> None:
    """Make ingest's `nth` batch commit raise RuntimeError("simulated crash"), as a crash would."""
    from curate.ingest import writer

    calls = []

    def crashing_commit(con, batch):
        calls.append(1)
        if len(calls) == nth:
            raise RuntimeError("simulated crash")
        return writer.commit(con, batch)

    monkeypatch.setattr("curate.ingest.commit", crashing_commit)
