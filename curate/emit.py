"""Write a run's selected samples as a training set, plus a manifest that says what it is.

Formats: `jsonl` (train.jsonl), `parquet` (train.parquet), `hf` (a `datasets` folder, dataset/).
Each row is `{"messages": [{"role", "content"}, ...], "sample_id": ...}` in selection order, the
conversational format TRL's SFTTrainer and `datasets.load_dataset("json", ...)` take as is.

Writes are atomic: everything is written under a temporary folder inside DIR and moved into place
only when complete, the manifest last, so a failed emit never leaves a half-written file under a
final name.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from curate import __version__
from curate.errors import CurateError
from curate.hashing import sha256_of
from curate.store import Store
from curate.store.runs import get_run

FORMATS = {"jsonl": "train.jsonl", "parquet": "train.parquet", "hf": "dataset"}
_BATCH = 10_000

_SELECTED = """
SELECT s.sample_id, s.messages
FROM selections sel JOIN samples s USING (sample_id)
WHERE sel.run_id = ? AND sel.selected
ORDER BY sel.rank
"""


def _batches(store: Store, run_id: str) -> Iterator[pa.RecordBatch]:
    with store.connect() as con:
        reader = con.sql(_SELECTED, params=[run_id]).to_arrow_reader(_BATCH)
        for batch in reader:
            # messages first: the column trainers look for
            yield pa.RecordBatch.from_arrays([batch.column("messages"), batch.column("sample_id")],
                                             names=["messages", "sample_id"])


def _write_jsonl(batches: Iterator[pa.RecordBatch], path: Path) -> int:
    rows = 0
    with open(path, "wb") as handle:
        for batch in batches:
            for record in batch.to_pylist():
                handle.write(orjson.dumps(record) + b"\n")
            rows += batch.num_rows
    return rows


def _write_parquet(batches: Iterator[pa.RecordBatch], path: Path) -> int:
    rows = 0
    writer = None
    for batch in batches:
        if writer is None:
            writer = pq.ParquetWriter(path, batch.schema)
        writer.write_batch(batch)
        rows += batch.num_rows
    if writer is None:   # empty selection: still a valid file
        pq.write_table(pa.table({"messages": pa.array([], pa.list_(pa.struct(
            [("role", pa.string()), ("content", pa.string())]))), "sample_id": pa.array([], pa.string())}), path)
    else:
        writer.close()
    return rows


def _write_hf(batches: Iterator[pa.RecordBatch], path: Path) -> int:
    import datasets

    staged = path.with_suffix(".parquet")
    rows = _write_parquet(batches, staged)
    datasets.Dataset.from_parquet(str(staged), cache_dir=str(path.parent / ".hf-cache")).save_to_disk(str(path))
    staged.unlink()
    shutil.rmtree(path.parent / ".hf-cache", ignore_errors=True)
    return rows


def _provenance(store: Store, run_id: str) -> dict[str, int]:
    with store.connect() as con:
        rows = con.execute(
            "SELECT src.name, count(DISTINCT sel.sample_id) FROM selections sel "
            "JOIN sample_sources ss USING (sample_id) JOIN sources src USING (source_id) "
            "WHERE sel.run_id = ? AND sel.selected GROUP BY 1 ORDER BY 2 DESC, 1", [run_id]).fetchall()
    return dict(rows)


def _move_into_place(staged: Path, final: Path) -> None:
    if final.is_dir() and not final.is_symlink():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(staged, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staged, final)


def emit(store: Store, run_id: str, out_dir: str | os.PathLike, fmt: str = "jsonl") -> dict[str, Any]:
    """Write run `run_id`'s selection to `out_dir` in `fmt`; return the manifest."""
    if fmt not in FORMATS:
        raise CurateError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    run = get_run(store, run_id)
    if run["status"] != "completed":
        raise CurateError(f"run {run_id} is {run['status']}, not completed; nothing to emit")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".curate-emit-", dir=out))
    try:
        name = FORMATS[fmt]
        writer = {"jsonl": _write_jsonl, "parquet": _write_parquet, "hf": _write_hf}[fmt]
        rows = writer(_batches(store, run_id), staging / name)
        manifest = {
            "run": {"run_id": run_id, "kind": run["kind"], "recipe": run["recipe"], "status": run["status"],
                    "started_at": str(run["started_at"]), "code_version": run["code_version"]},
            "parameters": run["params"],
            "counts": {"written": rows, **(run["counts"] or {})},
            "provenance": _provenance(store, run_id),
            "format": fmt,
            "files": {name: {"sha256": sha256_of(staging / name), "rows": rows}},
            "store": os.path.abspath(store.path),
            "curate_version": __version__,
        }
        (staging / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
        _move_into_place(staging / name, out / name)
        _move_into_place(staging / "manifest.json", out / "manifest.json")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest
