"""The command line: every command explains itself; the select/emit loop works as typed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import write_jsonl

COMMANDS = [[], ["ingest"], ["sql"], ["stats"], ["emit"], ["select"], ["select", "random"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "root")
def test_help(cli, command):
    out = cli(*command, "--help").stdout
    assert "Usage:" in out and len(out.splitlines()) > 3


def test_console_script_and_env_db(tmp_path):
    db = tmp_path / "env.duckdb"
    path = write_jsonl(tmp_path / "a.jsonl", [{"prompt": "p", "completion": "c"}])
    env = {"CURATE_DB": str(db), "PATH": f"{sys.prefix}/bin"}
    result = subprocess.run([f"{sys.prefix}/bin/curate", "ingest", str(path)], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert db.exists() and "1 new" in result.stdout


def test_ingest_select_emit(cli, tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"prompt": f"p{i}", "completion": "c"} for i in range(20)] + [{"prompt": "x"}])
    out = cli("ingest", path).stdout
    assert "20 new, 0 duplicate, 1 quarantined" in out
    assert cli("ingest", path, "--strict", expect=0).stdout   # unchanged source: nothing quarantined this time
    cli("ingest", write_jsonl(tmp_path / "b.jsonl", [{"prompt": "y"}]), "--strict", expect=1)
    run_id = cli("select", "random", "--budget", "5", "--seed", "2", "--where", "prompt LIKE 'p1%'").stdout.splitlines()[-1]
    assert run_id.startswith("random-")
    cli("emit", run_id, "--out", tmp_path / "out")
    assert len((tmp_path / "out" / "train.jsonl").read_text().splitlines()) == 5
    assert "no run" in cli("emit", "random-missing", "--out", tmp_path / "o2", expect=1).stderr


def test_errors_are_one_line_without_traceback(cli, tmp_path):
    result = cli("ingest", tmp_path / "missing.jsonl", expect=1)
    assert "no such file or folder" in result.stderr and "Traceback" not in result.stderr
    assert "unknown dialect" in cli("ingest", tmp_path, "--dialect", "nope", expect=1).stderr
