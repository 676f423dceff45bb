"""Scoring: expensive per-sample signals, computed once, kept in `scores` keyed by (sample, scorer).

A scorer name says what produced the value (method, model, criterion), so a re-run with the same
name reuses what exists. A failed computation is stored as `status = 'failed'` with its error and a
NULL value: never a default number that a selector could mistake for a real score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from curate.store import Store
from curate.store.tables import replace_rows


@dataclass
class ScoreRow:
    sample_id: str
    value: float | None
    details: dict[str, Any] | None = None
    error: str | None = None          # set (and value None) when the computation failed

    @property
    def status(self) -> str:
        return "failed" if self.error is not None else "ok"


def write_scores(store: Store, scorer: str, rows: Sequence[ScoreRow], run_id: str | None = None) -> int:
    """Upsert rows for `scorer` (a new value replaces an old one, a success replaces a failure)."""
    if not rows:
        return 0
    for row in rows:
        if row.error is None and (row.value is None or not np.isfinite(row.value)):
            raise ValueError(f"{scorer}: sample {row.sample_id} has no finite value and no error")
    table = pa.table({
        "sample_id": pa.array([r.sample_id for r in rows], pa.string()),
        "scorer": pa.repeat(pa.scalar(scorer), len(rows)),
        "value": pa.array([None if r.error is not None else float(r.value) for r in rows], pa.float64()),
        "status": pa.array([r.status for r in rows], pa.string()),
        "error": pa.array([r.error for r in rows], pa.string()),
        "details": pa.array([orjson.dumps(r.details).decode() if r.details is not None else None for r in rows],
                            pa.string()),
        "run_id": pa.repeat(pa.scalar(run_id, pa.string()), len(rows)),
    })
    with store.transaction() as con:
        con.register("new_scores", table)
        con.execute("CREATE OR REPLACE TEMP VIEW new_score_rows AS SELECT *, current_timestamp AS created_at "
                    "FROM new_scores")
        written = replace_rows(con, "scores", "new_score_rows", ["sample_id", "scorer"])
        con.unregister("new_scores")
    return written


def scored_ids(store: Store, scorer: str, *, include_failed: bool = False) -> set[str]:
    """Samples that already have a value (or, with include_failed, any row) for `scorer`."""
    with store.connect() as con:
        rows = con.execute("SELECT sample_id FROM scores WHERE scorer = ? AND (? OR status = 'ok')",
                           [scorer, include_failed]).fetchall()
    return {sid for (sid,) in rows}
