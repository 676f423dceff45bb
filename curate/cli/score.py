"""`curate score ...`: compute per-sample scores into the store (each scorer adds its command)."""

from __future__ import annotations

import typer

from curate.cli.app import _Group, app

score_app = typer.Typer(cls=_Group, no_args_is_help=True,
                        help="Score samples (expensive, cached, resumable); selectors read the scores.")
app.add_typer(score_app, name="score")
