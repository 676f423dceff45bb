"""Ingest's fast path: JSON Lines of a dialect with a flat form (alpaca, prompt-completion).

A plain record (an object of string fields the form knows) is mapped by the dialect's `FlatForm`
from its field values alone: no Sample, no message dicts, and its turns go into the batch as one
column. Any other line, including one that is not valid JSON, takes the row path (`map_rows`: the
adapter, quarantine) in its place in the file's order, so the first of two equal samples is the
same either way and the store ends up the same row for row as without this path
(tests/test_ingest_flat.py holds the two together).
"""

from __future__ import annotations

import orjson

from curate.formats import Dialect
from curate.formats.base import pair_id, turns_id
from curate.ingest.readers import lines_in, numbered_lines, parse_lines
from curate.ingest.writer import MappedBatch, map_rows


def map_block(batch: MappedBatch, source_id: str, first: int, block: bytes, dialect: Dialect) -> None:
    """Map one block of JSON Lines (`first` = its first line's number) into `batch`."""
    form = dialect.flat
    fields, roles, contents_of, known = form.fields, form.roles, form.contents, set(form.fields)
    id_of = pair_id(*roles) if len(roles) == 2 else lambda *contents: turns_id(roles, contents)
    loads = orjson.loads
    rows, ids, texts = [], [], []
    for row, line in numbered_lines(first, block):
        try:
            record = loads(line)
        except orjson.JSONDecodeError:
            record = None
        turns = contents_of(*map(record.get, fields)) if type(record) is dict and record.keys() <= known else None
        if turns is None:   # not plain: the plain rows before it first, then this one through the adapter
            batch.add_flat(source_id, rows, ids, roles, texts)
            rows, ids, texts = [], [], []
            map_rows(batch, source_id, parse_lines([(row, line)]), dialect.adapt, None)
            continue
        rows.append(row)
        ids.append(id_of(*turns))
        texts += turns
    batch.add_flat(source_id, rows, ids, roles, texts)
    last = first + lines_in(block) - 1
    batch.last_rows[source_id] = max(batch.last_rows.get(source_id, 0), last)
