"""`curate sql` and `curate stats`: read-only audits of the store."""

from __future__ import annotations

import io
import sys
from decimal import Decimal
from enum import Enum
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import typer

from curate.cli.app import app, console, print_table, store_of
from curate.errors import CurateError
from curate.store.audit import run_sql, stats


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"


def _json_default(value):
    if isinstance(value, Decimal):     # DuckDB's HUGEINT sums and DECIMALs
        return int(value) if value == value.to_integral_value() else float(value)
    return str(value)


def _flat_for_csv(table: pa.Table) -> pa.Table:
    """CSV has no nested values: lists, structs and maps become JSON text."""
    columns = []
    for column in table.columns:
        if pa.types.is_nested(column.type):
            column = pa.array([None if v is None else orjson.dumps(v, default=_json_default).decode()
                               for v in column.to_pylist()], pa.string())
        columns.append(column)
    return pa.table(columns, names=table.column_names)


@app.command("sql")
def sql_command(
    ctx: typer.Context,
    query: str = typer.Argument(..., help="One SQL query over the store's tables and views."),
    fmt: Format = typer.Option(Format.table, "--format", "-f", help="Output format."),
    out: Path = typer.Option(None, "--out", "-o", help="Write to this file instead of the terminal."),
) -> None:
    """Query the store read-only: writes, ATTACH, COPY, extensions and file reads are refused."""
    table = run_sql(store_of(ctx), query)
    if fmt is Format.parquet:
        if out is None:
            raise CurateError("--format parquet needs --out FILE")
        pq.write_table(table, out)
    elif fmt is Format.csv:
        buffer = io.BytesIO()
        pcsv.write_csv(_flat_for_csv(table), buffer)
        if out is None:
            sys.stdout.write(buffer.getvalue().decode())
        else:
            out.write_bytes(buffer.getvalue())
    elif fmt is Format.json:
        text = b"\n".join(orjson.dumps(row, default=_json_default) for row in table.to_pylist())
        if out is None:
            print(text.decode())
        else:
            out.write_bytes(text + b"\n")
    elif out is not None:
        raise CurateError("--format table prints to the terminal; use csv, json or parquet with --out")
    else:
        print_table(table)
    if out is not None:
        console.print(f"wrote {table.num_rows} rows to {out}", highlight=False)


@app.command("stats")
def stats_command(ctx: typer.Context) -> None:
    """Counts per source, dialect and kind; quarantined rows by reason; runs."""
    for name, table in stats(store_of(ctx)).items():
        if table.num_rows:
            print_table(table, title=name)
