"""`curate ingest`."""

from __future__ import annotations

from collections import defaultdict

import typer

from curate import formats
from curate.cli.app import app, console, err_console, parse_mapping, store_of
from curate.ingest import ingest


@app.command("ingest")
def ingest_command(
    ctx: typer.Context,
    paths: list[str] = typer.Argument(..., help="Files, folders, globs, saved datasets, or hf://owner/name[:split]."),
    dialect: str = typer.Option("auto", "--dialect", "-d",
                                help=f"Record dialect: auto, {', '.join(formats.DIALECTS)}."),
    source: str = typer.Option(None, "--source", "-s", help="Source name (default: the file or folder stem)."),
    field: list[str] = typer.Option([], "--field", help="Rename a field first: CANONICAL=PATH (repeatable)."),
    license: str = typer.Option(None, "--license", help="License of the data, recorded with the source."),
    strict: bool = typer.Option(False, "--strict", help="Exit non-zero if any row was quarantined."),
    workers: int = typer.Option(None, "--workers", min=1,
                                help="Processes that map large JSON Lines inputs (default: one per core, up to 3; "
                                     "1: map in this process)."),
) -> None:
    """Ingest instruction or trajectory data. Bad rows go to quarantine; good rows always land."""
    store = store_of(ctx)
    reports = ingest(store, paths, dialect=dialect, source=source, mapping=parse_mapping(field),
                     license=license, log=lambda message: err_console.print(message, markup=False), workers=workers)

    groups: dict[tuple, dict] = defaultdict(lambda: defaultdict(int))
    for report in reports:
        if report.status == "error":
            continue
        group = groups[(report.name, report.dialect)]
        group["inputs"] += 1
        group[report.status] += 1
        for key in ("new", "duplicate", "quarantined"):
            group[key] += getattr(report.counts, key)
    for (name, dialect_name), group in groups.items():
        if dialect_name is None:
            console.print(f"{name}: {group['inputs']} empty input(s) skipped", highlight=False)
            continue
        states = ", ".join(f"{group[s]} {s}" for s in ("resumed", "unchanged") if group[s])
        console.print(
            f"{name} [{dialect_name or '-'}]: {group['new']} new, {group['duplicate']} duplicate, "
            f"{group['quarantined']} quarantined from {group['inputs']} input(s)" + (f" ({states})" if states else ""),
            highlight=False)
    reasons = defaultdict(int)
    for report in reports:
        for reason, count in report.counts.reasons.items():
            reasons[reason] += count
    for reason, count in sorted(reasons.items(), key=lambda item: -item[1])[:10]:
        console.print(f"  quarantined {count}: {reason}", highlight=False)

    failed = [r for r in reports if r.status == "error"]
    for report in failed:
        err_console.print("error: " + report.error, style="red", markup=False)
    quarantined = sum(r.counts.quarantined for r in reports)
    if failed or (strict and quarantined):
        if strict and quarantined:
            err_console.print(f"--strict: {quarantined} row(s) quarantined "
                              "(see: curate sql \"SELECT * FROM quarantine\")", highlight=False)
        raise typer.Exit(1)
