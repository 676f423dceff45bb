"""The `curate` Typer app: the root command, its global options, and what every command shares.

Commands are thin: parse, validate, call the library, print. Each area's commands live in a module
of this package and attach themselves to `app` or to one of the sub-apps below.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import pyarrow as pa
import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from curate.errors import CurateError
from curate.store import Store
from curate.store.store import DEFAULT_PATH

console = Console(markup=False, highlight=False)
err_console = Console(stderr=True, highlight=False)
for _console in (console, err_console):
    if not _console.is_terminal:       # logs and pipes: don't fold words at 80 columns
        _console.width = 200


class _Group(TyperGroup):
    """Turns a CurateError anywhere below into one red line on stderr and exit status 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CurateError as error:
            err_console.print(f"error: {error}", style="red", markup=False, soft_wrap=True)
            raise typer.Exit(1) from None


app = typer.Typer(
    cls=_Group, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
    help="curate: ingest, score, select and emit post-training data, with every decision in a DuckDB store.",
)
select_app = typer.Typer(cls=_Group, no_args_is_help=True,
                         help="Select a subset of the samples; records a run and prints its id last.")
app.add_typer(select_app, name="select")


@app.callback()
def _root(
    ctx: typer.Context,
    db: str = typer.Option(DEFAULT_PATH, "--db", envvar="CURATE_DB", show_default=True,
                           help="The DuckDB store file (env CURATE_DB)."),
) -> None:
    ctx.obj = Store(db)


def store_of(ctx: typer.Context) -> Store:
    return ctx.find_root().obj


def print_table(table: pa.Table, title: str | None = None, limit: int | None = None) -> None:
    shown = table.slice(0, limit) if limit else table
    view = Table(title=title, title_justify="left", show_lines=False)
    for name in shown.column_names:
        view.add_column(name, overflow="fold")
    for row in shown.to_pylist():
        view.add_row(*("" if v is None else str(v) for v in row.values()))
    console.print(view)
    if limit and table.num_rows > limit:
        console.print(f"... {table.num_rows - limit} more rows")


def parse_mapping(pairs: Sequence[str]) -> dict[str, str]:
    mapping = {}
    for pair in pairs:
        canonical, sep, path = pair.partition("=")
        if not sep or not canonical or not path:
            raise CurateError(f"--field {pair!r}: expected CANONICAL=PATH, e.g. instruction=question")
        mapping[canonical.strip()] = path.strip()
    return mapping


def main() -> None:
    app(prog_name="curate")


if __name__ == "__main__":
    sys.exit(main())
