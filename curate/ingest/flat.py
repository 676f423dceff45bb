"""Ingest's fast path: JSON Lines, or a `.json` array, of a dialect with a flat form (alpaca,
prompt-completion, messages, sharegpt, lima).

A plain record (a JSON object whose fields the form maps, of the expected types) is mapped by the
dialect's `FlatForm` from its field values alone: no Sample, and its turns go into the batch as
Arrow columns, its other keys as its meta. Any other line, including one that is not valid JSON,
takes the row path (`map_rows`: the adapter, quarantine) in its place in the file's order, so the
first of two equal samples is the same either way and the store ends up the same row for row as
without this path (tests/test_ingest_flat.py holds the two together).
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson

from curate.formats import Dialect
from curate.formats.base import USER_ASSISTANT, pair_id, turns_id
from curate.ingest.readers import parse_lines
from curate.ingest.writer import MappedBatch, map_rows, meta_json


def map_records(batch: MappedBatch, source_id: str, records: Iterable[tuple[int, bytes]], last_row: int,
                dialect: Dialect) -> None:
    """Map one chunk of `(row number, JSON text)` from `readers.raw_records`, which covers the rows up
    to `last_row`, into `batch`."""
    fields, turns_of, reserved = dialect.flat.fields, dialect.flat.turns, dialect.flat.reserved
    known = set(fields)
    exchange_id = pair_id(*USER_ASSISTANT)
    loads = orjson.loads
    rows, ids, roles, texts, counts, metas = [], [], [], [], [], []
    for row, line in records:
        try:
            record = loads(line)
        except orjson.JSONDecodeError:
            record = None
        turns = meta = None
        if type(record) is dict and reserved.isdisjoint(record):
            turns = turns_of(*map(record.get, fields))
            if turns is not None and not record.keys() <= known:   # the other keys: meta, as adapt keeps it
                meta = meta_json({key: value for key, value in record.items() if key not in known})
        if turns is None:   # not plain: the plain rows before it first, then this one through the adapter
            batch.add_flat(source_id, rows, ids, roles, texts, counts, metas)
            rows, ids, roles, texts, counts, metas = [], [], [], [], [], []
            map_rows(batch, source_id, parse_lines([(row, line)]), dialect.adapt, None)
            continue
        these_roles, contents = turns
        rows.append(row)
        ids.append(exchange_id(*contents) if these_roles is USER_ASSISTANT else turns_id(these_roles, contents))
        roles += these_roles
        texts += contents
        counts.append(len(contents))
        metas.append(meta)
    batch.add_flat(source_id, rows, ids, roles, texts, counts, metas)
    batch.last_rows[source_id] = max(batch.last_rows.get(source_id, 0), last_row)
