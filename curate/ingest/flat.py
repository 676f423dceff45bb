"""Ingest's fast path: JSON Lines of a dialect with a flat form (alpaca, prompt-completion, messages).

A plain record (an object of the fields the form knows, of the expected types) is mapped by the
dialect's `FlatForm` from its field values alone: no Sample, and its turns go into the batch as
Arrow columns. Any other line, including one that is not valid JSON, takes the row path (`map_rows`: the
adapter, quarantine) in its place in the file's order, so the first of two equal samples is the
same either way and the store ends up the same row for row as without this path
(tests/test_ingest_flat.py holds the two together).
"""

from __future__ import annotations

import orjson

from curate.formats import Dialect
from curate.formats.base import USER_ASSISTANT, pair_id, turns_id
from curate.ingest.readers import lines_in, numbered_lines, parse_lines
from curate.ingest.writer import MappedBatch, map_rows


def map_block(batch: MappedBatch, source_id: str, first: int, block: bytes, dialect: Dialect) -> None:
    """Map one block of JSON Lines (`first` = its first line's number) into `batch`."""
    fields, turns_of, known = dialect.flat.fields, dialect.flat.turns, set(dialect.flat.fields)
    exchange_id = pair_id(*USER_ASSISTANT)
    loads = orjson.loads
    rows, ids, roles, texts, counts = [], [], [], [], []
    for row, line in numbered_lines(first, block):
        try:
            record = loads(line)
        except orjson.JSONDecodeError:
            record = None
        turns = turns_of(*map(record.get, fields)) if type(record) is dict and record.keys() <= known else None
        if turns is None:   # not plain: the plain rows before it first, then this one through the adapter
            batch.add_flat(source_id, rows, ids, roles, texts, counts)
            rows, ids, roles, texts, counts = [], [], [], [], []
            map_rows(batch, source_id, parse_lines([(row, line)]), dialect.adapt, None)
            continue
        these_roles, contents = turns
        rows.append(row)
        ids.append(exchange_id(*contents) if these_roles is USER_ASSISTANT else turns_id(these_roles, contents))
        roles += these_roles
        texts += contents
        counts.append(len(contents))
    batch.add_flat(source_id, rows, ids, roles, texts, counts)
    last = first + lines_in(block) - 1
    batch.last_rows[source_id] = max(batch.last_rows.get(source_id, 0), last)
