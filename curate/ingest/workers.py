"""Ingest's fast path on several cores: JSON Lines inputs mapped in worker processes.

The main process cuts each input into pieces (byte ranges of about PIECE_BYTES that end on a line
boundary) without reading them. A worker reads a piece, maps it with `flat.map_records` into a
`MappedBatch` whose rows are numbered from the piece's first line, and writes the mapped samples'
Arrow table to a spool file (handing them back through a pipe costs the main process about as much
as mapping them). The main process merges the pieces in file order (`MappedBatch.merge`), shifting
row numbers by the lines before each piece, so the store ends up row for row as with one process.

Workers come from a fork server that has imported this module, so starting one costs little; each
exits on its own if the process that started it dies.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import pyarrow as pa

from curate import formats
from curate.errors import CurateError
from curate.ingest.flat import map_records
from curate.ingest.readers import block_lines, cannot_read, line_start, numbered_lines
from curate.ingest.writer import MappedBatch

PIECE_BYTES = 16 << 20        # bytes of JSON Lines per piece
POOL_MIN_BYTES = 64 << 20     # inputs smaller in all are mapped in-process: starting workers costs more
MAX_WORKERS = 3               # one writer commits what about three workers map


def default_workers() -> int:
    """One worker per core this process may use, up to MAX_WORKERS."""
    return min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1,
               MAX_WORKERS)


@dataclass(frozen=True)
class Piece:
    """Bytes [start, end) of a JSON Lines input, whose rows belong to `source_id`."""

    source_id: str
    dialect: str
    uri: str
    path: str
    start: int
    end: int


def pieces(path: str, uri: str, source_id: str, dialect: str, skip_through: int) -> Iterator[Piece]:
    """The input's rows after line `skip_through`, cut into pieces that end on a line boundary."""
    try:
        size = os.path.getsize(path)
        start = line_start(path, skip_through)
        with open(path, "rb") as handle:
            while start < size:
                handle.seek(start + PIECE_BYTES)
                handle.readline()
                end = min(handle.tell(), size)
                yield Piece(source_id, dialect, uri, path, start, end)
                start = end
    except OSError as error:
        raise cannot_read(uri, error) from error


def map_piece(piece: Piece, spool: str) -> tuple[MappedBatch, str | None]:
    """In a worker: the piece's rows mapped (numbered from 1), and the spool file that holds their
    flat samples (None if none); the batch comes back without them."""
    try:
        with open(piece.path, "rb") as handle:
            handle.seek(piece.start)
            block = handle.read(piece.end - piece.start)
    except OSError as error:
        raise cannot_read(piece.uri, error) from error
    batch, lines = MappedBatch(), block_lines(block)
    del block   # the lines hold a copy
    map_records(batch, piece.source_id, numbered_lines(1, lines), len(lines), formats.get(piece.dialect))
    batch._seen = set()     # the main process keeps its own; no need to ship this one
    if not batch.flat_samples:
        return batch, None
    samples = pa.concat_tables(batch.flat_samples)
    batch.flat_samples = []
    batch.flat_owners = [([sid for ids, _ in batch.flat_owners for sid in ids], piece.source_id)]
    path = os.path.join(spool, f"{uuid.uuid4().hex}.arrow")
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, samples.schema) as writer:
        writer.write_table(samples)
    return batch, path


def _start_worker(main_pid: int, spool: str) -> None:
    gc.disable()   # mapping allocates many short-lived containers and no cycles to collect
    # The main process's writer is the slower stage: let it have the cores it needs (nice 15 gave the
    # 10x T0 benchmark 3-8% over nice 5, and nice 19 less than 15).
    os.nice(15)

    def exit_when_main_is_gone() -> None:
        # The pool cannot tell a worker that its main process died (the fork server outlives it
        # while workers hold its pipe), so each worker looks for itself, and takes the spool folder
        # with it: a killed ingest would otherwise leave up to a few hundred MB of mapped pieces.
        while True:
            time.sleep(1.0)
            try:
                os.kill(main_pid, 0)
            except ProcessLookupError:
                shutil.rmtree(spool, ignore_errors=True)
                os._exit(1)

    threading.Thread(target=exit_when_main_is_gone, daemon=True).start()


class MapperPool:
    """Worker processes that map pieces, and the spool folder they write to (removed on exit)."""

    def __init__(self, workers: int):
        self.workers = workers

    def __enter__(self) -> MapperPool:  # noqa: PYI034 (typing.Self needs Python 3.11)
        self._spool = tempfile.mkdtemp(prefix="curate-ingest-")
        context = multiprocessing.get_context("forkserver")
        # pandas too: pyarrow imports it on first use where it is installed, a quarter of a second each
        context.set_forkserver_preload([__name__, "pandas"])
        self._executor = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_start_worker,
                                             initargs=(os.getpid(), self._spool))
        # Start the fork server and the workers now, in the background, while the caller plans.
        self._starting = threading.Thread(target=lambda: [self._executor.submit(os.getpid) for _ in range(self.workers)])
        self._starting.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._starting.join()
        self._executor.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(self._spool, ignore_errors=True)

    def submit(self, piece: Piece) -> Future:
        return self._executor.submit(map_piece, piece, self._spool)

    def result(self, future: Future) -> MappedBatch:
        """The mapped piece, with its flat samples read back (the spool file is gone after)."""
        try:
            batch, path = future.result()
        except BrokenProcessPool as error:
            raise RuntimeError("an ingest worker process died: out of memory, or the script that called "
                               "ingest() lacks an `if __name__ == \"__main__\":` guard (workers import it). "
                               "The batches committed stay; running the ingest again resumes after them") from error
        if path is not None:   # the table maps the file; unlinked, it lives until the table goes
            batch.flat_samples = [pa.ipc.open_file(pa.memory_map(path)).read_all()]
            os.unlink(path)
        return batch

    def discard(self, future: Future) -> None:
        """Drop a piece not to be merged (its source failed), spool file included."""
        try:
            _, path = future.result()
        except CurateError:   # its source's failure, already reported
            return
        if path is not None:
            os.unlink(path)
