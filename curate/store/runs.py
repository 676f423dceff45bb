"""Runs: what ran, with which parameters and code, and how it ended.

    with start_run(store, "select:random", params) as run:
        ...                       # work; raise to mark the run failed
        run.counts["selected"] = 10
    print(run.run_id)

A run that raises is recorded as failed with its error; one that returns is completed.
"""

from __future__ import annotations

import functools
import hashlib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

import curate
from curate.store.store import Store


def _canonical(params: dict[str, Any]) -> bytes:
    return orjson.dumps(params, option=orjson.OPT_SORT_KEYS, default=str)


def params_hash(params: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical(params)).hexdigest()[:16]


@functools.cache
def code_version() -> str:
    """The package version, plus the git commit (and '+dirty') when run from a checkout."""
    version = curate.__version__
    root = Path(__file__).resolve().parents[2]
    if (root / ".git").exists():
        try:
            commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                                    capture_output=True, text=True, timeout=5).stdout.strip()
            dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            if commit:
                version += f"+g{commit}" + (".dirty" if dirty else "")
        except (OSError, subprocess.SubprocessError):
            pass
    return version


def _prefect_flow_run_id() -> str | None:
    """The Prefect flow run this runs inside, if any (only looked up when Prefect is loaded)."""
    if "prefect" not in sys.modules:
        return None
    from prefect.runtime import flow_run

    return str(flow_run.id) if flow_run.id else None


@dataclass
class Run:
    run_id: str
    kind: str
    params: dict[str, Any]
    counts: dict[str, Any] = field(default_factory=dict)


@contextmanager
def start_run(store: Store, kind: str, params: dict[str, Any], *, recipe: str | None = None,
              flow_run_id: str | None = None) -> Iterator[Run]:
    run = Run(run_id=f"{kind.split(':')[-1]}-{uuid.uuid4().hex[:10]}", kind=kind, params=params)
    with store.transaction() as con:
        con.execute(
            "INSERT INTO runs (run_id, kind, recipe, params, params_hash, code_version, flow_run_id, status, "
            "started_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'running', current_timestamp)",
            [run.run_id, kind, recipe, _canonical(params).decode(), params_hash(params), code_version(),
             flow_run_id or _prefect_flow_run_id()],
        )
    try:
        yield run
    except BaseException as error:
        with store.transaction() as con:
            con.execute(
                "UPDATE runs SET status = 'failed', error = ?, counts = ?, finished_at = current_timestamp "
                "WHERE run_id = ?",
                [f"{type(error).__name__}: {error}", orjson.dumps(run.counts).decode(), run.run_id],
            )
        raise
    with store.transaction() as con:
        con.execute(
            "UPDATE runs SET status = 'completed', counts = ?, finished_at = current_timestamp WHERE run_id = ?",
            [orjson.dumps(run.counts).decode(), run.run_id],
        )


def get_run(store: Store, run_id: str) -> dict[str, Any]:
    from curate.errors import CurateError

    with store.connect() as con:
        row = con.execute("SELECT * FROM runs WHERE run_id = ?", [run_id]).fetchone()
        if row is None:
            raise CurateError(f"no run {run_id!r} in {store.path} (see: curate sql \"SELECT run_id, kind, "
                              "status FROM runs ORDER BY started_at DESC\")")
        columns = [d[0] for d in con.description]
    record = dict(zip(columns, row))
    for key in ("params", "counts"):
        if isinstance(record.get(key), str):
            record[key] = orjson.loads(record[key])
    return record
