"""Labels: short semantic tags per sample, in the `labels` table (sample_id, label, origin).

Labellers (one module each) turn samples into `Labelled` columns; `write_labelled` stores them:
- `field`: labels already in the data (a JSON path in `meta`, or the sample's source file);
- `embedding`: zero-shot top-k against a vocabulary by cosine similarity of prompt embeddings;
- `llm`: InsTag-style open tagging with an LLM, normalised, optionally mapped onto a vocabulary;
- `graph`: the label graph MIG propagates information over (networkx, GraphML export).

A labelling run owns its origin for the samples it covers: it replaces their labels of that origin
and records every sample it could not label in `label_failures`, with the reason.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from curate.errors import CurateError
from curate.store import Store
from curate.store.runs import start_run

RAW_LIMIT = 2_000   # characters of a failed labeller's raw output kept in the store


@dataclass
class Vocabulary:
    """A label vocabulary file: a JSON list of label strings (MIG's valid_tags.json)."""

    path: str
    labels: list[str]
    sha256: str

    def __len__(self) -> int:
        return len(self.labels)


def load_vocab(path: str | Path) -> Vocabulary:
    """Read a vocabulary file, naming the file and the entry at fault on bad input."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CurateError(f"--label-vocab {path}: cannot read: {error.strerror or error}") from error
    try:
        labels = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise CurateError(f"--label-vocab {path}: not valid JSON: {error}") from error
    if not isinstance(labels, list):
        raise CurateError(f"--label-vocab {path}: expected a JSON list of label strings, "
                          f"got a {type(labels).__name__}")
    for index, label in enumerate(labels):
        if not isinstance(label, str) or not label.strip():
            raise CurateError(f"--label-vocab {path}: entry [{index}] is {label!r}, expected a non-empty string")
    if not labels:
        raise CurateError(f"--label-vocab {path}: the list is empty")
    return Vocabulary(str(path), list(dict.fromkeys(labels)), hashlib.sha256(data).hexdigest())


@dataclass
class Labelled:
    """What a labeller produced for the samples it covered, as columns."""

    origin: str
    covered: np.ndarray                                   # every sample id the labeller looked at
    sample_ids: list[str] = field(default_factory=list)   # one entry per (sample, label)
    labels: list[str] = field(default_factory=list)
    scores: list[float | None] = field(default_factory=list)
    details: list[dict[str, Any] | None] = field(default_factory=list)
    failed_ids: list[str] = field(default_factory=list)   # one entry per sample that could not be labelled
    errors: list[str] = field(default_factory=list)
    raws: list[str | None] = field(default_factory=list)

    def add(self, sample_id: str, label: str, score: float | None = None,
            details: dict[str, Any] | None = None) -> None:
        self.sample_ids.append(sample_id)
        self.labels.append(label)
        self.scores.append(score)
        self.details.append(details)

    def fail(self, sample_id: str, error: str, raw: str | None = None) -> None:
        self.failed_ids.append(sample_id)
        self.errors.append(error)
        self.raws.append(raw[:RAW_LIMIT] if raw is not None else None)

    def keep_only(self, vocab: Vocabulary) -> None:
        """Drop labels outside `vocab`, as MIG's data loader does; a sample left with none is a failure."""
        labels = np.asarray(self.labels, dtype=object)
        keep = np.isin(labels, np.asarray(vocab.labels, dtype=object))
        if keep.all():
            return
        ids = np.asarray(self.sample_ids, dtype=object)
        dropped: dict[str, list[str]] = {}
        for sample_id, label in zip(ids[~keep], labels[~keep]):
            dropped.setdefault(sample_id, []).append(label)
        for sample_id in sorted(set(dropped) - set(ids[keep])):
            self.fail(sample_id, f"none of its labels is in the vocabulary {vocab.path}",
                      orjson.dumps(dropped[sample_id]).decode())
        for name in ("sample_ids", "labels", "scores", "details"):
            setattr(self, name, np.asarray(getattr(self, name), dtype=object)[keep].tolist())


@dataclass
class LabelReport:
    origin: str
    run_id: str
    covered: int = 0
    labelled: int = 0        # samples that got at least one label
    labels: int = 0          # (sample, label) rows written
    distinct: int = 0        # distinct labels written
    failed: int = 0


def _json_column(values: Sequence[dict | None]) -> pa.Array:
    return pa.array([orjson.dumps(v).decode() if v is not None else None for v in values], pa.string())


def write_labelled(store: Store, result: Labelled, run_id: str | None = None) -> None:
    """Replace the covered samples' labels of `result.origin`, and their failures, in one transaction."""
    labels = pa.table({
        "sample_id": pa.array(result.sample_ids, pa.string()),
        "label": pa.array(result.labels, pa.string()),
        "origin": pa.repeat(pa.scalar(result.origin), len(result.labels)),
        "score": pa.array(result.scores, pa.float64()),
        "details": _json_column(result.details),
        "run_id": pa.repeat(pa.scalar(run_id, pa.string()), len(result.labels)),
    })
    failures = pa.table({
        "sample_id": pa.array(result.failed_ids, pa.string()),
        "origin": pa.repeat(pa.scalar(result.origin), len(result.failed_ids)),
        "error": pa.array(result.errors, pa.string()),
        "raw": pa.array(result.raws, pa.string()),
        "run_id": pa.repeat(pa.scalar(run_id, pa.string()), len(result.failed_ids)),
    })
    with store.transaction() as con:
        con.register("covered_samples", pa.table({"sample_id": pa.array(result.covered, pa.string())}))
        con.register("new_labels", labels)
        con.register("new_failures", failures)
        for table in ("labels", "label_failures"):
            con.execute(f"DELETE FROM {table} t WHERE t.origin = ? AND t.sample_id IN "
                        "(SELECT sample_id FROM covered_samples)", [result.origin])
        # one row per (sample, label): two raw tags may normalise to one label; the most confident wins
        con.execute("INSERT INTO labels BY NAME SELECT * EXCLUDE (_n) FROM ("
                    " SELECT *, row_number() OVER (PARTITION BY sample_id, label ORDER BY score DESC NULLS LAST)"
                    " AS _n FROM new_labels) WHERE _n = 1")
        con.execute("INSERT INTO label_failures BY NAME SELECT *, current_timestamp AS created_at FROM new_failures")
        for name in ("covered_samples", "new_labels", "new_failures"):
            con.unregister(name)


def label_samples(store: Store, kind: str, origin: str, chunks: Iterable[Labelled], *,
                  vocab: Vocabulary | None = None, params: dict[str, Any] | None = None) -> LabelReport:
    """Run a labeller (`chunks` of its output) as one recorded run; each chunk commits on its own."""
    params = {"origin": origin, "label_vocab": vocab.path if vocab else None,
              "label_vocab_sha256": vocab.sha256 if vocab else None, **(params or {})}
    with start_run(store, f"label:{kind}", params) as run:
        report = LabelReport(origin=origin, run_id=run.run_id)
        for chunk in chunks:
            if vocab is not None:
                chunk.keep_only(vocab)
            write_labelled(store, chunk, run.run_id)
            report.covered += len(chunk.covered)
            report.failed += len(chunk.failed_ids)
        with store.connect() as con:
            report.labels, report.labelled, report.distinct = con.execute(
                "SELECT count(*), count(DISTINCT sample_id), count(DISTINCT label) FROM labels WHERE run_id = ?",
                [run.run_id]).fetchone()
        run.counts.update({k: getattr(report, k) for k in ("covered", "labelled", "labels", "distinct", "failed")})
    return report
