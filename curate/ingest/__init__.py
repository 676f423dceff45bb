"""Ingest: inputs -> rows -> Samples -> the store, one transaction per batch.

    reports = ingest(store, ["data/lima.jsonl", "hf://tatsu-lab/alpaca"], dialect="auto")

Two phases. Plan: expand the arguments into inputs, pick each one's dialect (auto-detection peeks at
its first rows), hash its bytes, and look up whether it was ingested before: a source whose name,
bytes, dialect and mapping were ingested completely is skipped; one left partial by a crash resumes
after its last committed row. Load: stream every input's rows through its dialect adapter, gather
them into batches that may span several small files, and commit each batch in one transaction
(while the next batch is being mapped, so DuckDB and Python work at the same time). JSON Lines in a
dialect with a flat form (alpaca, prompt-completion, messages, sharegpt, lima), and `.json` arrays
of one, take a fast path (`curate.ingest.flat`) that gives the same rows; where there is enough
JSON Lines, worker processes map it (`curate.ingest.workers`).

A row that cannot be parsed or mapped goes to `quarantine`; an input that cannot be read at all is
reported as an error and the other inputs still land.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field

import orjson
import pyarrow as pa
from tqdm import tqdm

from curate import formats
from curate.errors import CurateError, FieldError
from curate.ingest.flat import map_records
from curate.ingest.readers import (
    BATCH_ROWS,
    BATCH_SAMPLE_BYTES,
    Input,
    Row,
    expand,
    peek,
    raw_records,
    raw_records_of,
    read,
)
from curate.ingest.workers import PIECE_BYTES, POOL_MIN_BYTES, MapperPool, default_workers, pieces
from curate.ingest.writer import Counts, MappedBatch, apply_mapping, commit, map_rows
from curate.store import Store

__all__ = ["SourceReport", "expand", "ingest"]


@dataclass
class SourceReport:
    uri: str
    name: str
    dialect: str | None = None
    source_id: str | None = None
    sha256: str | None = None
    status: str = "ingested"     # ingested | resumed | unchanged | empty | error
    watermark: int = 0
    counts: Counts = field(default_factory=Counts)
    error: str | None = None


def _source_id(name: str, uri: str, sha256: str | None, dialect: str, mapping: Mapping | None) -> str:
    key = orjson.dumps([name, uri, sha256, dialect, dict(sorted((mapping or {}).items()))])
    return hashlib.sha256(key).hexdigest()[:16]


def _detect(source: Input, first: Iterable[Row], mapping: Mapping | None) -> formats.Dialect:
    """The dialect of the first of `first` rows that shows one (they are read only that far)."""
    keys, seen = None, 0
    for seen, row in enumerate(first, start=1):
        if row.error is not None:
            continue
        try:
            record = apply_mapping(row.record, mapping or {})
        except FieldError:
            continue
        dialect = formats.detect(record)
        if dialect is not None:
            return dialect
        keys = sorted(record) if isinstance(record, Mapping) else type(record).__name__
    raise CurateError(
        f"{source.uri}: cannot tell the dialect from the first {seen} rows "
        f"(keys seen: {keys}); pass --dialect, one of {', '.join(formats.DIALECTS)}"
    )


def _plan(store: Store, inputs: list[Input], dialect: str, name: str | None, mapping: Mapping | None,
          license: str | None, log: Callable[[str], None]) -> list[tuple[Input, SourceReport]]:
    planned = []
    detected: dict[tuple[str, str], int] = {}
    with ThreadPoolExecutor(max_workers=2) as hashing:   # hashlib lets go of the GIL: files hash in parallel
        digests = {source.uri: hashing.submit(source.sha256) for source in inputs}
        for source in inputs:
            report = SourceReport(uri=source.uri, name=name or source.group)
            try:
                first = peek(source)
                row = next(first, None)
                if row is None:
                    report.status = "empty"
                    planned.append((source, report))
                    continue
                chosen = (_detect(source, itertools.chain([row], first), mapping) if dialect == "auto"
                          else formats.get(dialect))
                if dialect == "auto":
                    detected[(report.name, chosen.name)] = detected.get((report.name, chosen.name), 0) + 1
                report.dialect = chosen.name
                report.sha256 = digests[source.uri].result()
                report.source_id = _source_id(report.name, source.uri, report.sha256, chosen.name, mapping)
            except CurateError as error:
                report.status, report.error = "error", str(error)
            planned.append((source, report))
    for (group, chosen_name), count in detected.items():
        log(f"{group}: detected dialect {chosen_name}" + (f" in {count} inputs" if count > 1 else ""))

    todo = [(source, report) for source, report in planned if report.status not in ("error", "empty")]
    with store.transaction() as con:   # one query each way: a folder may hold hundreds of files
        known = {source_id: (status, watermark) for source_id, status, watermark in con.execute(
            "SELECT source_id, status, watermark FROM sources WHERE list_contains(?, source_id)",
            [[report.source_id for _, report in todo]]).fetchall()}
        fresh = []
        for source, report in todo:
            status, watermark = known.get(report.source_id, (None, 0))
            if status is None:
                fresh.append((source, report))
                known[report.source_id] = ("planned", 0)
            elif status in ("complete", "planned"):      # planned: the same input named twice
                report.status = "unchanged"
            else:
                report.status, report.watermark = "resumed", watermark
                log(f"{source.uri}: resuming after row {report.watermark}")
        if fresh:
            con.register("fresh_sources", pa.table({
                "source_id": [r.source_id for _, r in fresh], "name": [r.name for _, r in fresh],
                "uri": [s.uri for s, _ in fresh], "dialect": [r.dialect for _, r in fresh],
                "sha256": pa.array([r.sha256 for _, r in fresh], pa.string()),
                "mapping": pa.array([orjson.dumps(mapping).decode() if mapping else None] * len(fresh), pa.string()),
                "license": pa.array([license] * len(fresh), pa.string()),
            }))
            con.execute("INSERT INTO sources (source_id, name, uri, dialect, sha256, mapping, license, status, "
                        "started_at) SELECT *, 'partial', current_timestamp FROM fresh_sources")
            con.unregister("fresh_sources")
    return planned


class _Batches:
    """Gathers mapped rows into batches of about BATCH_ROWS (fewer where their samples come to
    BATCH_SAMPLE_BYTES) and commits each in a writer thread while the next is being mapped (one batch
    in flight at a time bounds memory)."""

    def __init__(self, store: Store, reports: dict[str, SourceReport], writer: ThreadPoolExecutor, progress: tqdm):
        self.store, self.reports, self.writer, self.progress = store, reports, writer, progress
        self.batch = MappedBatch()
        self.in_flight: Future | None = None

    def _write(self, batch: MappedBatch) -> None:
        with self.store.transaction() as con:
            for source_id, counts in commit(con, batch).items():
                self.reports[source_id].counts.add(counts)

    def flush_if_full(self) -> None:
        if self.batch.rows >= BATCH_ROWS or self.batch.sample_bytes >= BATCH_SAMPLE_BYTES:
            self._submit()

    def _submit(self) -> None:
        if self.in_flight is not None:
            self.in_flight.result()
        self.in_flight = self.writer.submit(self._write, self.batch)
        self.progress.update(self.batch.rows)
        self.batch = MappedBatch()

    def finish(self) -> None:
        self._submit()
        self.in_flight.result()


def _pool_workers(inputs: list[Input], dialect: str, mapping: Mapping | None, fast: bool,
                  workers: int | None) -> int:
    """How many worker processes to map with: none (map in-process) unless the JSON Lines inputs come
    to POOL_MIN_BYTES. Decided before the plan, so that the workers start while it runs."""
    workers = default_workers() if workers is None else workers
    if not fast or mapping or workers < 2 or (dialect != "auto" and formats.get(dialect).flat is None):
        return 0
    size = sum(source.size() or 0 for source in inputs if source.format == "jsonl")
    return workers if size >= POOL_MIN_BYTES else 0


def _load(store: Store, planned: list[tuple[Input, SourceReport]], mapping: Mapping | None, fast: bool,
          pool: MapperPool | None) -> None:
    reports = {report.source_id: report for _, report in planned}
    progress = tqdm(unit=" rows", disable=None, desc="ingest")
    # Pieces being mapped by workers, in file order, each with its source's report and size; None in
    # place of a future marks the end of a source. Enough bytes are kept pending that the workers
    # still have work while this thread waits for the writer.
    pending: deque[tuple[SourceReport, Future | None, int]] = deque()
    pending_bytes = 0
    next_row: dict[str, int] = {}   # per pooled source, the number of the row before its next piece

    with ThreadPoolExecutor(max_workers=1) as writer:
        batches = _Batches(store, reports, writer, progress)

        def merge_pieces(keep_bytes: int) -> None:
            """Merge mapped pieces into the batch, in file order, until at most `keep_bytes` of them are
            pending (0: all of them)."""
            nonlocal pending_bytes
            while pending and (pending_bytes > keep_bytes or keep_bytes == 0):
                report, future, size = pending.popleft()
                pending_bytes -= size
                if report.status == "error":
                    if future is not None:
                        pool.discard(future)
                elif future is None:
                    batches.batch.completed.append(report.source_id)
                else:
                    try:
                        piece = pool.result(future)
                    except CurateError as error:
                        report.status, report.error = "error", str(error)
                        continue
                    offset = next_row[report.source_id]
                    next_row[report.source_id] += piece.last_rows[report.source_id]
                    batches.batch.merge(piece, offset)
                    batches.flush_if_full()

        for source, report in planned:
            if report.status in ("error", "unchanged", "empty"):
                continue
            dialect = formats.get(report.dialect)
            try:
                if pool is not None and source.format == "jsonl" and dialect.flat is not None:
                    next_row[report.source_id] = report.watermark
                    for piece in pieces(source.path, source.uri, report.source_id, dialect.name, report.watermark):
                        pending.append((report, pool.submit(piece), piece.end - piece.start))
                        pending_bytes += piece.end - piece.start
                        merge_pieces(keep_bytes=2 * pool.workers * PIECE_BYTES)
                    pending.append((report, None, 0))
                    continue
                merge_pieces(keep_bytes=0)    # what came before this input lands before it
                flat = fast and dialect.flat is not None and not mapping and raw_records_of(source)
                chunks = raw_records(source, report.watermark) if flat else read(source, report.watermark)
                for chunk in chunks:
                    if flat:
                        map_records(batches.batch, report.source_id, *chunk, dialect)
                    else:
                        map_rows(batches.batch, report.source_id, chunk, dialect.adapt, mapping)
                    batches.flush_if_full()
            except CurateError as error:
                # Rows already committed stay; the source stays partial and a re-run resumes it.
                report.status, report.error = "error", str(error)
                continue
            batches.batch.completed.append(report.source_id)
        merge_pieces(keep_bytes=0)
        batches.finish()
    progress.close()


def ingest(store: Store, paths: list[str], *, dialect: str = "auto", source: str | None = None,
           mapping: Mapping[str, str] | None = None, license: str | None = None,
           log: Callable[[str], None] = lambda message: None, fast: bool = True,
           workers: int | None = None) -> list[SourceReport]:
    """Ingest every input named by `paths`; return one report per input (errors included).

    `fast=False` maps every row through its dialect's adapter, even where the fast path for flat
    records (`curate.ingest.flat`) would give the same rows quicker; tests compare the two.
    `workers` processes map the fast path's JSON Lines when there is enough of it
    (`curate.ingest.workers`; default: one per core, up to three; 1 maps everything in this process).
    """
    if dialect != "auto":
        formats.get(dialect)   # fail fast on a misspelt dialect
    errors: list[SourceReport] = []
    inputs: list[Input] = []
    for path in paths:
        try:
            inputs += expand(path)
        except CurateError as error:
            errors.append(SourceReport(uri=path, name=source or "", status="error", error=str(error)))
    workers = _pool_workers(inputs, dialect, mapping, fast, workers)
    with store.session(), (MapperPool(workers) if workers else nullcontext()) as pool:
        planned = _plan(store, inputs, dialect, source, mapping, license, log)
        _load(store, planned, mapping, fast, pool)
    return errors + [report for _, report in planned]
