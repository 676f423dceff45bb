"""Keyed writes to tables that carry no PRIMARY KEY (see migrations/0001_core.sql).

`relation` is the name of anything DuckDB can select from: a registered Arrow table, a view, a
temporary table. Both helpers run inside the caller's transaction.
"""

from __future__ import annotations

import duckdb


def _matches(key: list[str]) -> str:
    return " AND ".join(f"t.{column} IS NOT DISTINCT FROM r.{column}" for column in key)


def insert_missing(con: duckdb.DuckDBPyConnection, table: str, relation: str, key: list[str]) -> int:
    """Insert the rows of `relation` whose key `table` lacks (first row wins within `relation`)."""
    columns = ", ".join(key)
    return con.execute(
        f"INSERT INTO {table} BY NAME "
        f"SELECT * EXCLUDE (_first) FROM ("
        f"  SELECT *, row_number() OVER (PARTITION BY {columns}) = 1 AS _first FROM {relation}) r "
        f"WHERE _first AND NOT EXISTS (SELECT 1 FROM {table} t WHERE {_matches(key)})"
    ).fetchone()[0]


def replace_rows(con: duckdb.DuckDBPyConnection, table: str, relation: str, key: list[str]) -> int:
    """Upsert: delete the rows of `table` whose key is in `relation`, then insert `relation`."""
    con.execute(f"DELETE FROM {table} t WHERE EXISTS (SELECT 1 FROM {relation} r WHERE {_matches(key)})")
    return con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {relation}").fetchone()[0]
