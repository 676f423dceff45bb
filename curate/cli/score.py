"""`curate score ...`: the sub-app every scoring command attaches to, and `curate score import`.

Other modules add their scorers with `@score_app.command("NAME")` (importing `score_app` from here).
"""

from __future__ import annotations

from pathlib import Path

import typer

from curate.cli.app import _Group, app, console, err_console, store_of
from curate.scoring.external import import_scores
from curate.store.runs import start_run

score_app = typer.Typer(cls=_Group, no_args_is_help=True,
                        help="Compute or import per-sample scores (kept in `scores`, keyed by scorer name).")
app.add_typer(score_app, name="score")


@score_app.command("import")
def import_command(
    ctx: typer.Context,
    path: Path = typer.Argument(..., help="CSV, JSON Lines, JSON or Parquet: a sample_id (or the sample's "
                                          "content in any ingestable dialect) and a value per row."),
    scorer: str = typer.Option(..., "--scorer", help="Name to store the values under, e.g. reward:rm-7b."),
    value_field: str = typer.Option("value", "--value-field", help="Column holding the score."),
    id_field: str = typer.Option("sample_id", "--id-field", help="Column holding the sample id."),
) -> None:
    """Import an external per-sample score (a reward model's output, a training signal, ...)."""
    store = store_of(ctx)
    params = {"path": str(path), "scorer": scorer, "value_field": value_field, "id_field": id_field}
    with start_run(store, "score:import", params) as run:
        report = import_scores(store, str(path), scorer, value_field=value_field, id_field=id_field,
                               run_id=run.run_id)
        run.counts.update({"written": report.written, "unmatched": report.unmatched, "errors": len(report.errors),
                           "repeated": report.repeated})
    console.print(f"{scorer}: {report.written} samples scored; {report.unmatched} rows name no stored sample; "
                  f"{report.repeated} repeated (last wins); {len(report.errors)} bad rows", highlight=False)
    for error in report.errors[:20]:
        err_console.print(f"error: {error}", style="red", markup=False, soft_wrap=True)
    if len(report.errors) > 20:
        err_console.print(f"... {len(report.errors) - 20} more bad rows", markup=False)
    if report.errors:
        raise typer.Exit(1)
