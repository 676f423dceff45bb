"""The `curate` command line. Importing this package registers every command."""

from curate.cli import audit, difficulty, emit, ingest, models, score, select  # noqa: F401  (each registers its commands)
from curate.cli.app import app, main

__all__ = ["app", "main"]
