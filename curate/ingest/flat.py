"""Ingest's fast path: JSON Lines of a dialect with a flat form (alpaca, prompt-completion).

A plain record (an object of string fields the form knows) is mapped by the dialect's `FlatForm`
from its field values alone: no Sample, no message dicts, and its turns go into the batch as one
column. Anything else, including a line that is not valid JSON, takes the row path with its own
line (`map_rows`, the adapter, quarantine), so the store ends up the same row for row as without
this path (tests/test_ingest_flat.py holds the two together).
"""

from __future__ import annotations

import orjson

from curate.formats import Dialect
from curate.formats.base import turns_id
from curate.ingest.readers import numbered_lines, parse_block
from curate.ingest.writer import MappedBatch, map_rows


def map_block(batch: MappedBatch, source_id: str, first: int, block: bytes, dialect: Dialect) -> None:
    """Map one block of JSON Lines (`first` = its first line's number) into `batch`."""
    form = dialect.flat
    fields, roles, contents_of, known = form.fields, form.roles, form.contents, set(form.fields)
    loads = orjson.loads
    rows, ids, texts, declined = [], [], [], []
    last = first - 1
    for last, line in numbered_lines(first, block):
        try:
            record = loads(line)
        except orjson.JSONDecodeError:
            declined.append(last)
            continue
        if type(record) is not dict or not record.keys() <= known:
            declined.append(last)
            continue
        turns = contents_of(*[record.get(name) for name in fields])
        if turns is None:
            declined.append(last)
            continue
        rows.append(last)
        ids.append(turns_id(roles, turns))
        texts += turns
    batch.add_flat(source_id, rows, ids, roles, texts)
    if declined:
        map_rows(batch, source_id, parse_block(first, block, set(declined)), dialect.adapt, None)
    if last >= first:
        batch.last_rows[source_id] = max(batch.last_rows.get(source_id, 0), last)
