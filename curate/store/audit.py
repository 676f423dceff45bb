"""Read-only SQL over the store, and its summary statistics."""

from __future__ import annotations

import duckdb
import pyarrow as pa

from curate.errors import CurateError
from curate.store.store import Store


def run_sql(store: Store, query: str) -> pa.Table:
    """Run a query on a read-only connection that can reach nothing but the store's tables."""
    with store.audit() as con:
        try:
            result = con.sql(query)
            return result.to_arrow_table() if result is not None else pa.table({})
        except duckdb.PermissionException as error:
            raise CurateError(
                "refused: `curate sql` cannot read or write files, attach databases, or load extensions "
                f"({str(error).splitlines()[0]})") from None
        except duckdb.InvalidInputException as error:
            if "read-only" in str(error):
                raise CurateError(
                    "refused: `curate sql` is read-only; the store is unchanged "
                    f"({str(error).splitlines()[0]})") from None
            raise CurateError(str(error).splitlines()[0]) from None
        except duckdb.Error as error:
            raise CurateError(str(error).splitlines()[0]) from None


STATS_QUERIES = {
    "sources": """
        SELECT name, dialect, count(*) AS inputs, sum(rows_read) AS rows_read, sum(rows_new) AS new,
               sum(rows_duplicate) AS duplicate, sum(rows_quarantined) AS quarantined,
               string_agg(DISTINCT status, ',') AS status
        FROM sources GROUP BY name, dialect ORDER BY name, dialect""",
    "kinds": "SELECT kind, count(*) AS samples FROM samples GROUP BY kind ORDER BY kind",
    "dialects": """
        SELECT src.dialect, count(DISTINCT ss.sample_id) AS samples
        FROM sample_sources ss JOIN sources src USING (source_id) GROUP BY 1 ORDER BY 1""",
    "quarantine": """
        SELECT src.name AS source, q.reason, count(*) AS rows
        FROM quarantine q JOIN sources src USING (source_id)
        GROUP BY ALL ORDER BY rows DESC, source, q.reason LIMIT 50""",
    "runs": """
        SELECT kind, status, count(*) AS runs, max(started_at) AS last_started
        FROM runs GROUP BY ALL ORDER BY kind, status""",
}


def stats(store: Store) -> dict[str, pa.Table]:
    return {name: run_sql(store, query) for name, query in STATS_QUERIES.items()}
