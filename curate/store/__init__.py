"""DuckDB store: schema migrations, connections, runs and audit."""

from curate.store.store import Store, default_path

__all__ = ["Store", "default_path"]
