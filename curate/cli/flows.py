"""`curate run`, `curate schedule` and `curate report`."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from curate.cli.app import app, console, print_table, store_of
from curate.errors import CurateError


class Runner(str, Enum):
    local = "local"
    ray = "ray"


@app.command("run")
def run_command(
    ctx: typer.Context,
    recipe: Path = typer.Argument(..., help="A recipe YAML file (see catalogs/)."),
    runner: Runner = typer.Option(Runner.local, "--runner", help="local, or ray (Prefect's Ray task runner)."),
    ray_address: str = typer.Option(None, "--ray-address", help="Ray cluster address (default: a local cluster)."),
) -> None:
    """Run a recipe as a Prefect flow: each step a task, the outputs emitted, a report written."""
    from curate.flows.recipe import run_recipe

    store = store_of(ctx)
    result = run_recipe(recipe, store.path, runner.value, ray_address)
    console.print(f"recipe {result['recipe']}: run {result['run_id']} (Prefect flow run {result['flow_run_id']})")
    for step in result["steps"]:
        counts = ", ".join(f"{k} {v}" for k, v in step["result"]["counts"].items())
        reused = " (reused)" if step["result"]["reused"] else ""
        label = step["kind"] + (f" {step['name']}" if step["name"] else "")
        console.print(f"  {step['index']}. {label}{reused}: {counts} [{step['seconds']:.1f}s]")
    for name, folder in result["outputs"].items():
        console.print(f"  output {name}: {folder}")
    if result["report"]:
        console.print(f"  report: {result['report']}")


@app.command("schedule")
def schedule_command(
    ctx: typer.Context,
    recipe: Path = typer.Argument(None, help="The recipe to schedule."),
    cron: str = typer.Option(None, "--cron", help='Cron schedule, e.g. "0 3 * * *" (03:00 UTC daily).'),
    interval: float = typer.Option(None, "--interval", help="Or: run every this many seconds."),
    name: str = typer.Option(None, "--name", help="Deployment name (default: the recipe's name)."),
    list_: bool = typer.Option(False, "--list", help="List the deployments Prefect knows, and exit."),
) -> None:
    """Serve a Prefect deployment of a recipe on a schedule (blocks; Ctrl-C stops serving)."""
    from curate.flows.schedule import deployment_name, list_deployments, next_runs, serve_recipe

    if list_:
        rows = list_deployments()
        if rows:
            import pyarrow as pa

            print_table(pa.Table.from_pylist(rows))
        else:
            console.print("no deployments")
        return
    if recipe is None:
        raise CurateError("give a recipe to schedule, or --list")
    deployment = deployment_name(recipe, name)
    console.print(f"serving deployment curate-recipe/{deployment} (store {Path(store_of(ctx).path).resolve()})")
    console.print("next runs: " + ", ".join(t.isoformat(timespec="seconds") for t in next_runs(cron, interval)))
    serve_recipe(recipe, store_of(ctx).path, cron=cron, interval=interval, name=name)


@app.command("report")
def report_command(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., help="A selection run."),
    out: Path = typer.Option(Path("report.html"), "--out", "-o", help="The HTML file to write."),
    compare: list[str] = typer.Option([], "--compare", help="Other runs to compare against (repeatable)."),
) -> None:
    """Write one self-contained HTML report about a selection run (open it in a browser)."""
    from curate.report import write_report

    path = write_report(store_of(ctx), run_id, out, compare)
    console.print(f"wrote {path}")
