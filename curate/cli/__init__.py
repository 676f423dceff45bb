"""The `curate` command line. Importing this package registers every command."""

# Each module registers its commands on import.
from curate.cli import audit  # noqa: F401
from curate.cli import difficulty  # noqa: F401
from curate.cli import emit  # noqa: F401
from curate.cli import flows  # noqa: F401
from curate.cli import ingest  # noqa: F401
from curate.cli import labels  # noqa: F401
from curate.cli import mig  # noqa: F401
from curate.cli import models  # noqa: F401
from curate.cli import quality  # noqa: F401
from curate.cli import score  # noqa: F401
from curate.cli import select  # noqa: F401
from curate.cli import serve  # noqa: F401
from curate.cli import synth  # noqa: F401
from curate.cli import trajectories  # noqa: F401
from curate.cli.app import app, main

__all__ = ["app", "main"]
