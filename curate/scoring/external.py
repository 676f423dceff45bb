"""Import per-sample scores computed elsewhere (a reward model, a training signal, human grades).

    import_scores(store, "rewards.jsonl", scorer="reward:rm-7b")

Each row names its sample by `sample_id`, or by its content: any record curate can ingest (a
`messages` list, Alpaca fields, `prompt`/`completion`, ...), whose conversation hashes to the
sample's id. The value comes from `value_field`. Rows naming no stored sample are counted, not
fatal (a score file often covers more data than the store). A row with no usable value or no
identity is an error naming the file, row and field; the good rows still land.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from curate import formats
from curate.errors import CurateError, FieldError
from curate.ingest.readers import expand, read
from curate.scoring import ScoreRow, write_scores
from curate.store import Store


@dataclass
class ImportReport:
    scorer: str
    written: int = 0
    unmatched: int = 0
    repeated: int = 0                                    # rows naming a sample an earlier row named (last wins)
    errors: list[str] = field(default_factory=list)     # "file:row: field: reason"


def _value(record, value_field: str) -> float:
    if value_field not in record:
        raise FieldError(value_field, "missing")
    value = record[value_field]
    if isinstance(value, bool) or value is None or value == "":
        raise FieldError(value_field, f"expected a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise FieldError(value_field, f"expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise FieldError(value_field, f"expected a finite number, got {value!r}")
    return number


def _identity(record, id_field: str, value_field: str) -> str:
    if record.get(id_field):
        if not isinstance(record[id_field], str):
            raise FieldError(id_field, f"expected a string, got {type(record[id_field]).__name__}")
        return record[id_field]
    content = {k: v for k, v in record.items() if k != value_field}
    dialect = formats.detect(content)
    if dialect is None:
        raise FieldError(id_field, f"missing, and the row's other fields ({', '.join(sorted(content)) or 'none'}) "
                                   "are not a sample in any known dialect")
    return dialect.adapt(content).sample_id


def import_scores(store: Store, path: str, scorer: str, *, value_field: str = "value", id_field: str = "sample_id",
                  run_id: str | None = None) -> ImportReport:
    report = ImportReport(scorer=scorer)
    inputs = expand(path)
    if not inputs:
        raise CurateError(f"{path}: no such file")
    with store.connect() as con:
        known = {sid for (sid,) in con.execute("SELECT sample_id FROM samples_base").fetchall()}
    seen: set[str] = set()
    for source in inputs:
        for batch in read(source):
            rows: dict[str, ScoreRow] = {}
            for row in batch:
                where = f"{source.uri}:{row.row_number}"
                if row.error:
                    report.errors.append(f"{where}: {row.error}")
                    continue
                if not isinstance(row.record, dict):
                    report.errors.append(f"{where}: expected an object, got {type(row.record).__name__}")
                    continue
                try:
                    sample_id = _identity(row.record, id_field, value_field)
                    value = _value(row.record, value_field)
                except FieldError as error:
                    report.errors.append(f"{where}: {error}")
                    continue
                if sample_id not in known:
                    report.unmatched += 1
                    continue
                report.repeated += sample_id in rows or sample_id in seen
                rows[sample_id] = ScoreRow(sample_id, value, {"file": source.uri, "row": row.row_number})
            seen.update(rows)
            write_scores(store, scorer, list(rows.values()), run_id)
    report.written = len(seen)
    return report
