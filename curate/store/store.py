"""The DuckDB store: one file, short-lived connections, one transaction per batch.

DuckDB lets one process hold a database file open for writing at a time, and a reader in another
process cannot open it while a writer holds it. So nothing keeps the file open for long:

- `store.transaction()` opens, BEGINs, COMMITs and closes: one atomic unit of work.
- Hot loops (an ingest's batches) wrap themselves in `store.session()`, which keeps one connection
  across transactions but hands the file back between two transactions: every `hold_seconds`, and
  at once when another process is waiting for it.
- A process that finds the file held leaves a marker in `<store>.waiting/` while it retries; a
  session that sees a fresh marker closes the file and pauses until the waiting process has had its
  turn. Without that handoff a writer that reopens at once would starve a reader that polls.

So `curate sql` and `curate stats` work while a flow writes (they wait for the writer's current
transaction), and each batch is atomic: a crash loses at most the batch in flight, never half of one.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from curate.errors import CurateError
from curate.store import migrations

DEFAULT_PATH = "curate.duckdb"
LOCK_WAIT_SECONDS = 120.0   # how long an open waits for another process to release the file
HOLD_SECONDS = 10.0         # longest a session keeps the file unasked (a curate reader asks at once: see above);
                            # each hand-back checkpoints, which costs an ingest about a tenth of a second
# Long text compresses to a quarter of DuckDB's default (FSST) size with zstd, and checkpoints twice
# as fast (benchmarks/ingest.py); columns zstd cannot hold (numbers, lists' offsets) keep the default.
WRITE_CONFIG = {"force_compression": "zstd"}


def default_path() -> str:
    return os.environ.get("CURATE_DB", DEFAULT_PATH)


def _is_lock_conflict(error: Exception) -> bool:
    return isinstance(error, duckdb.IOException) and "lock" in str(error).lower()


MARKER_FRESH_SECONDS = 30.0   # a marker older than this belongs to a process that died waiting
HANDOFF_WAIT_SECONDS = 5.0    # longest a session pauses for waiting processes


def _waiting_dir(path: str) -> Path:
    return Path(f"{path}.waiting")


def _others_waiting(path: str) -> bool:
    folder = _waiting_dir(path)
    if not folder.is_dir():
        return False
    now = time.time()
    for marker in folder.iterdir():
        try:
            if now - marker.stat().st_mtime < MARKER_FRESH_SECONDS and marker.name != f"{os.getpid()}":
                return True
        except FileNotFoundError:
            continue
    return False


def _connect_with_retry(path: str, wait: float, **kwargs) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + wait
    marker: Path | None = None
    try:
        while True:
            try:
                return duckdb.connect(path, **kwargs)
            except duckdb.IOException as error:
                if not _is_lock_conflict(error):
                    raise
                if time.monotonic() >= deadline:
                    raise CurateError(
                        f"{path}: the store is held by another process for longer than {wait:.0f}s ({error})"
                    ) from error
                if marker is None:   # tell the holder someone is waiting (see module docstring)
                    _waiting_dir(path).mkdir(exist_ok=True)
                    marker = _waiting_dir(path) / f"{os.getpid()}"
                marker.touch()
                time.sleep(0.01 + 0.02 * random.random())
    finally:
        if marker is not None:
            marker.unlink(missing_ok=True)


def _settled(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """The connection with no half-read result left by earlier work (DuckDB 2 refuses `con.sql()` then)."""
    con.execute("SELECT NULL").fetchall()
    return con


class Store:
    """A curate store at `path`. Cheap to construct; opens nothing until used."""

    def __init__(self, path: str | os.PathLike | None = None, *, lock_wait: float | None = None,
                 hold_seconds: float | None = None):
        self.path = str(path if path is not None else default_path())
        self.lock_wait = LOCK_WAIT_SECONDS if lock_wait is None else lock_wait
        self.hold_seconds = HOLD_SECONDS if hold_seconds is None else hold_seconds
        self._migrated = False
        self._session: duckdb.DuckDBPyConnection | None = None   # held by session(), else None
        self._session_depth = 0
        self._session_opened = 0.0

    def __repr__(self) -> str:
        return f"Store({self.path!r})"

    # -- connections -------------------------------------------------------------------------

    def _open(self) -> duckdb.DuckDBPyConnection:
        parent = Path(self.path).parent
        if not parent.exists():
            raise CurateError(f"{self.path}: folder {parent} does not exist")
        con = _connect_with_retry(self.path, self.lock_wait, config=WRITE_CONFIG)
        if not self._migrated:
            migrations.upgrade(con)
            self._migrated = True
        return _settled(con)

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-write connection, schema upgraded; the session's if one is open, else a fresh one."""
        if self._session_depth:
            if self._session is None:
                self._session, self._session_opened = self._open(), time.monotonic()
            yield _settled(self._session)
            return
        con = self._open()
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One atomic unit of work: committed on normal exit, rolled back on any exception."""
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        self._maybe_hand_back()

    @contextmanager
    def session(self) -> Iterator[Store]:
        """Keep one connection across the transactions inside, handing the file back now and then."""
        self._session_depth += 1
        try:
            yield self
        finally:
            self._session_depth -= 1
            if not self._session_depth and self._session is not None:
                self._session.close()
                self._session = None

    def _maybe_hand_back(self) -> None:
        if self._session is None:
            return
        waiting = _others_waiting(self.path)
        if waiting or time.monotonic() - self._session_opened > self.hold_seconds:
            self._session.close()
            self._session = None   # reopened lazily
        if waiting:
            deadline = time.monotonic() + HANDOFF_WAIT_SECONDS
            while _others_waiting(self.path) and time.monotonic() < deadline:
                time.sleep(0.01)

    @contextmanager
    def audit(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection that cannot touch anything outside the store.

        External access (files, ATTACH, COPY, extensions, URLs) is disabled and the configuration
        locked, so a query can read the store's tables and nothing else.
        """
        if not Path(self.path).exists():
            raise CurateError(f"{self.path}: no such store (run `curate ingest` first)")
        con = _connect_with_retry(
            self.path,
            self.lock_wait,
            read_only=True,
            config={"enable_external_access": False, "lock_configuration": True},
        )
        try:
            yield con
        finally:
            con.close()

    # -- small conveniences ------------------------------------------------------------------

    def query(self, sql: str, params: list | None = None):
        """Run one read query on a fresh connection and return a pyarrow Table."""
        with self.connect() as con:
            return con.sql(sql, params=params or []).to_arrow_table()

    def schema_version(self) -> int:
        with self.connect() as con:
            return migrations.current_version(con)
