"""Map a batch of rows to columns, and commit those columns in one transaction.

Mapping is the dialect adapter, per record (the one definition of each dialect); it writes into flat
column lists, from which Arrow arrays are built without per-row objects. Plain records of a flat
dialect arrive already as columns (`add_flat`, from `curate.ingest.flat`). Committing is columnar:
DuckDB inserts only the rows whose key is absent, so a batch applied twice (a resumed crash) adds
nothing twice.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from curate.errors import FieldError
from curate.formats.base import Sample, sample_id
from curate.ingest.readers import Row
from curate.store.tables import insert_missing

RAW_LIMIT = 2_000   # characters of a quarantined row kept in the store

MESSAGE_TYPE = pa.struct([("role", pa.string()), ("content", pa.string())])


def meta_json(value: Any) -> str | None:
    """How a sample's meta (and a score's details) is stored: JSON text, or NULL when empty."""
    if not value:
        return None
    return orjson.dumps(value, default=str).decode()


def _raw_text(row: Row) -> str:
    text = row.raw if row.raw is not None else orjson.dumps(row.record, default=str).decode()
    return text[:RAW_LIMIT]


def apply_mapping(record: Any, mapping: Mapping[str, str]) -> Any:
    """Rename fields before the adapter sees them: canonical name -> dotted path in the record."""
    if not mapping or not isinstance(record, Mapping):
        return record
    record = dict(record)
    for canonical, path in mapping.items():
        value: Any = record
        for part in path.split("."):
            if not isinstance(value, Mapping) or part not in value:
                raise FieldError(path, f"missing (mapped to {canonical!r})")
            value = value[part]
        if "." not in path:
            record.pop(path, None)
        record[canonical] = value
    return record


@dataclass
class Counts:
    read: int = 0
    new: int = 0
    duplicate: int = 0
    quarantined: int = 0
    reasons: Counter = field(default_factory=Counter)

    def add(self, other: Counts) -> None:
        self.read += other.read
        self.new += other.new
        self.duplicate += other.duplicate
        self.quarantined += other.quarantined
        self.reasons.update(other.reasons)


# Keys of tables that adapters fill through `Sample.related` (a dialect adds its own tables here).
RELATED_KEYS: dict[str, list[str]] = {
    "labels": ["sample_id", "label", "origin"],
    "scores": ["sample_id", "scorer"],
    "trajectories": ["sample_id"],
    "trajectory_steps": ["sample_id", "step"],
}


@dataclass
class MappedBatch:
    """Rows of one or more sources after the adapter, as columns, ready for one transaction.

    Samples are unique by id within the batch; each remembers the source that brought it first, so
    that source is credited with it if it is new to the store.
    """

    ids: list[str] = field(default_factory=list)
    owners: list[str] = field(default_factory=list)          # source of each sample's first row
    kinds: list[str] = field(default_factory=list)
    golds: list[str | None] = field(default_factory=list)
    metas: list[str | None] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)           # all turns of all samples, flat
    contents: list[str] = field(default_factory=list)
    offsets: list[int] = field(default_factory=lambda: [0])  # sample i's turns: offsets[i]:offsets[i+1]
    provenance_ids: list[str] = field(default_factory=list)  # one per good row, duplicates included
    provenance_sources: list[str] = field(default_factory=list)
    provenance_rows: list[int] = field(default_factory=list)
    quarantine: list[dict[str, Any]] = field(default_factory=list)
    related: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    last_rows: dict[str, int] = field(default_factory=dict)  # source -> last row number in this batch
    completed: list[str] = field(default_factory=list)       # sources whose last row is in this batch
    flat_samples: list[pa.Table] = field(default_factory=list)  # from add_flat, already as columns
    flat_owners: list[tuple[list[str], str]] = field(default_factory=list)   # (ids, source) per table
    sample_bytes: int = 0      # about how many bytes its samples hold: long documents end a batch early
    _seen: set[str] = field(default_factory=set)

    @property
    def rows(self) -> int:
        return len(self.provenance_ids) + len(self.quarantine)

    def add_sample(self, sample: Sample, source_id: str, row_number: int) -> None:
        sid = sample_id(sample.messages)
        self.provenance_ids.append(sid)
        self.provenance_sources.append(source_id)
        self.provenance_rows.append(row_number)
        if sid in self._seen:
            return
        self._seen.add(sid)
        self.ids.append(sid)
        self.owners.append(source_id)
        self.kinds.append(sample.kind)
        self.golds.append(sample.gold_answer)
        self.metas.append(meta_json(sample.meta))
        for message in sample.messages:
            self.roles.append(message["role"])
            self.contents.append(message["content"])
            self.sample_bytes += len(message["content"])
        self.offsets.append(len(self.contents))
        for label, origin in sample.labels:
            self.related["labels"].append({"sample_id": sid, "label": label, "origin": origin})
        for scorer, value, details in sample.scores:
            self.related["scores"].append(
                {"sample_id": sid, "scorer": scorer, "value": value, "details": meta_json(details)})
        for table, rows in sample.related.items():
            if table not in RELATED_KEYS:
                raise KeyError(f"no key declared for table {table!r} in RELATED_KEYS")
            self.related[table] += [{"sample_id": sid, **row} for row in rows]

    def add_flat(self, source_id: str, rows: list[int], ids: list[str], roles: list[str], texts: list[str],
                 counts: list[int], metas: list[str | None]) -> None:
        """Add plain samples as columns: sample i has `counts[i]` turns, whose roles and contents are
        the next `counts[i]` of `roles` and `texts`, and meta `metas[i]` (stored JSON, or None)."""
        self.provenance_ids += ids
        self.provenance_sources += [source_id] * len(ids)
        self.provenance_rows += rows
        if not ids:
            return
        if self._seen.isdisjoint(ids) and len(set(ids)) == len(ids):   # the usual case, at C speed
            self._seen.update(ids)
        else:
            kept_ids, kept_roles, kept_texts, kept_counts, kept_metas = [], [], [], [], []
            start = 0
            for sid, count, meta in zip(ids, counts, metas):
                if sid not in self._seen:
                    self._seen.add(sid)
                    kept_ids.append(sid)
                    kept_roles += roles[start:start + count]
                    kept_texts += texts[start:start + count]
                    kept_counts.append(count)
                    kept_metas.append(meta)
                start += count
            if not kept_ids:
                return
            ids, roles, texts, counts, metas = kept_ids, kept_roles, kept_texts, kept_counts, kept_metas
        count = len(ids)
        offsets = np.zeros(count + 1, dtype=np.int32)
        np.cumsum(counts, out=offsets[1:])
        messages = pa.ListArray.from_arrays(
            pa.array(offsets),
            pa.StructArray.from_arrays([pa.array(roles, pa.string()), pa.array(texts, pa.string())],
                                       fields=list(MESSAGE_TYPE)))
        table = pa.table({
            "sample_id": pa.array(ids, pa.string()),
            "kind": pa.array(["instruction"] * count, pa.string()),
            "messages": messages,
            "gold_answer": pa.nulls(count, pa.string()),
            "meta": pa.array(metas, pa.string()),
        })
        self.flat_samples.append(table)
        self.flat_owners.append((ids, source_id))
        self.sample_bytes += table.nbytes

    def merge(self, other: MappedBatch, row_offset: int = 0) -> None:
        """Add the rows of `other`, mapped apart (by a worker process), after this batch's rows, as if
        they had been added here; `other` numbers its rows from `row_offset` + 1."""
        def shifted(row: int) -> int:
            return row + row_offset

        self.provenance_ids += other.provenance_ids
        self.provenance_sources += other.provenance_sources
        self.provenance_rows += map(shifted, other.provenance_rows) if row_offset else other.provenance_rows
        dropped = set()
        for index, sid in enumerate(other.ids):
            if sid in self._seen:
                dropped.add(sid)
                continue
            self._seen.add(sid)
            self.ids.append(sid)
            self.owners.append(other.owners[index])
            self.kinds.append(other.kinds[index])
            self.golds.append(other.golds[index])
            self.metas.append(other.metas[index])
            turns = slice(other.offsets[index], other.offsets[index + 1])
            self.roles += other.roles[turns]
            self.contents += other.contents[turns]
            self.offsets.append(len(self.contents))
        for table, rows in other.related.items():
            self.related[table] += [row for row in rows if row["sample_id"] not in dropped]
        for samples, (ids, source_id) in zip(other.flat_samples, other.flat_owners):
            if not self._seen.isdisjoint(ids):   # `other` holds each id once; drop those seen here
                keep = [sid not in self._seen for sid in ids]
                samples, ids = samples.filter(pa.array(keep)), [sid for sid, kept in zip(ids, keep) if kept]
            self._seen.update(ids)
            self.flat_samples.append(samples)
            self.flat_owners.append((ids, source_id))
        self.sample_bytes += other.sample_bytes
        self.quarantine += [{**row, "row_number": shifted(row["row_number"])} for row in other.quarantine]
        for source_id, row in other.last_rows.items():
            self.last_rows[source_id] = max(self.last_rows.get(source_id, 0), shifted(row))
        self.completed += other.completed

    def owners_column(self) -> pa.Array:
        """The source credited with each row of `samples_table()`, in its order."""
        owners = list(self.owners)
        for ids, source_id in self.flat_owners:
            owners += [source_id] * len(ids)
        return pa.array(owners, pa.string())

    def add_quarantine(self, source_id: str, row: Row, field_name: str | None, reason: str) -> None:
        self.quarantine.append({"source_id": source_id, "row_number": row.row_number, "field": field_name,
                                "reason": reason, "raw": _raw_text(row)})

    def samples_table(self) -> pa.Table:
        turns = pa.StructArray.from_arrays(
            [pa.array(self.roles, pa.string()), pa.array(self.contents, pa.string())], fields=list(MESSAGE_TYPE))
        return pa.concat_tables([pa.table({
            "sample_id": pa.array(self.ids, pa.string()),
            "kind": pa.array(self.kinds, pa.string()),
            "messages": pa.ListArray.from_arrays(pa.array(self.offsets, pa.int32()), turns),
            "gold_answer": pa.array(self.golds, pa.string()),
            "meta": pa.array(self.metas, pa.string()),
        }), *self.flat_samples])


def map_rows(batch: MappedBatch, source_id: str, rows: list[Row], adapt: Callable[[Any], Sample],
             mapping: Mapping[str, str] | None) -> None:
    """Run the adapter over `rows` of one source, adding samples or quarantine rows to `batch`."""
    for row in rows:
        if row.error is not None:
            batch.add_quarantine(source_id, row, None, row.error)
            continue
        try:
            sample = adapt(apply_mapping(row.record, mapping) if mapping else row.record)
        except FieldError as error:
            batch.add_quarantine(source_id, row, error.field, str(error))
        else:
            batch.add_sample(sample, source_id, row.row_number)
    if rows:
        batch.last_rows[source_id] = rows[-1].row_number


def commit(con: duckdb.DuckDBPyConnection, batch: MappedBatch) -> dict[str, Counts]:
    """Write one batch inside the caller's transaction; advance each source's counters and watermark."""
    # The ids first, then a plain insert of the new samples: an INSERT fed by the ANTI JOIN itself
    # costs a quarter more time and makes the file a third larger (benchmarks/ingest.py).
    samples, owners = batch.samples_table(), batch.owners_column()
    con.register("batch_ids", samples.select(["sample_id"]))
    new_ids = con.sql("SELECT b.sample_id FROM batch_ids b ANTI JOIN samples_base s ON s.sample_id = b.sample_id"
                      ).to_arrow_table()["sample_id"].combine_chunks()
    con.unregister("batch_ids")
    if len(new_ids) < len(samples):
        is_new = pc.is_in(samples["sample_id"], value_set=new_ids)
        samples, owners = samples.filter(is_new), owners.filter(is_new)
    con.register("batch_samples", samples)
    con.execute("INSERT INTO samples_base SELECT *, current_timestamp FROM batch_samples")
    con.unregister("batch_samples")

    if batch.provenance_ids:
        con.register("batch_provenance", pa.table({
            "sample_id": pa.array(batch.provenance_ids, pa.string()),
            "source_id": pa.array(batch.provenance_sources, pa.string()),
            "row_number": pa.array(batch.provenance_rows, pa.int64()),
        }))
        # Rows past a source's watermark have never been committed (ingest resumes after it), so
        # provenance needs no key check.
        con.execute("INSERT INTO sample_sources SELECT * FROM batch_provenance")
        con.unregister("batch_provenance")

    if batch.quarantine:
        con.register("batch_quarantine", pa.Table.from_pylist(batch.quarantine))
        con.execute("INSERT OR IGNORE INTO quarantine BY NAME "
                    "SELECT *, current_timestamp AS created_at FROM batch_quarantine")
        con.unregister("batch_quarantine")

    for table, rows in batch.related.items():
        if rows:
            con.register("batch_related", pa.Table.from_pylist(rows))
            stamp = ", current_timestamp AS created_at" if table == "scores" else ""
            con.execute(f"CREATE OR REPLACE TEMP VIEW batch_related_rows AS SELECT *{stamp} FROM batch_related")
            insert_missing(con, table, "batch_related_rows", RELATED_KEYS[table])
            con.unregister("batch_related")

    counts: dict[str, Counts] = defaultdict(Counts)
    new_per_source = pc.value_counts(owners)   # counted in C, not per row
    for source_id, new in zip(new_per_source.field("values").to_pylist(), new_per_source.field("counts").to_pylist()):
        counts[source_id].new += new
    for source_id, read in Counter(batch.provenance_sources).items():   # counted in C, not per row
        counts[source_id].read += read
    for q in batch.quarantine:
        c = counts[q["source_id"]]
        c.read += 1
        c.quarantined += 1
        c.reasons[q["reason"]] += 1
    for source_id, c in counts.items():
        c.duplicate = c.read - c.quarantined - c.new
    touched = sorted(set(batch.last_rows) | set(batch.completed))
    if touched:   # one UPDATE for all the batch's sources (a folder of small files puts hundreds in a batch)
        con.register("batch_counts", pa.table({
            "source_id": touched,
            "rows_read": [counts[s].read for s in touched],
            "rows_new": [counts[s].new for s in touched],
            "rows_duplicate": [counts[s].duplicate for s in touched],
            "rows_quarantined": [counts[s].quarantined for s in touched],
            "watermark": pa.array([batch.last_rows.get(s, 0) for s in touched], pa.int64()),
            "completed": [s in batch.completed for s in touched],
        }))
        con.execute(
            "UPDATE sources SET rows_read = sources.rows_read + b.rows_read, rows_new = sources.rows_new + b.rows_new, "
            "rows_duplicate = sources.rows_duplicate + b.rows_duplicate, "
            "rows_quarantined = sources.rows_quarantined + b.rows_quarantined, "
            "watermark = greatest(sources.watermark, b.watermark), "
            "status = CASE WHEN b.completed THEN 'complete' ELSE sources.status END, "
            "finished_at = CASE WHEN b.completed THEN current_timestamp ELSE sources.finished_at END "
            "FROM batch_counts b WHERE sources.source_id = b.source_id")
        con.unregister("batch_counts")
    return counts
