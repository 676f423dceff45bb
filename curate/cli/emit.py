"""`curate emit`."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from curate.cli.app import app, console, store_of
from curate.emit import emit


class EmitFormat(str, Enum):
    jsonl = "jsonl"
    parquet = "parquet"
    hf = "hf"


@app.command("emit")
def emit_command(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., help="The run whose selection to write (printed by `curate select`)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    fmt: EmitFormat = typer.Option(EmitFormat.jsonl, "--format", "-f", help="jsonl, parquet or hf (save_to_disk)."),
) -> None:
    """Write a run's selected samples as a chat-format training set plus manifest.json."""
    manifest = emit(store_of(ctx), run_id, out, fmt.value)
    (name, info), = manifest["files"].items()
    console.print(f"wrote {info['rows']} samples to {out / name} and {out / 'manifest.json'}", highlight=False)
