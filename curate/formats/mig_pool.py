"""MIG's annotated pool: {dialogs, annotation: {instag: {content}, deita: {quality_scores, complexity_scores}}}.

InsTag tags become labels (origin `instag`). DEITA scores become `deita_quality` and
`deita_complexity` (mean over rounds, the per-round values in details) and `deita`, the mean over
rounds of quality x complexity, which is the score MIG's reference weights samples by
(`mig/data.py`, `MIGDataPoint.from_dict`).
"""

from __future__ import annotations

from collections.abc import Mapping

from curate.errors import FieldError
from curate.formats import messages as messages_dialect
from curate.formats.base import Sample, require_object

KEYS = {"dialogs", "annotation"}


def _numbers(value, where: str) -> list[float]:
    if not isinstance(value, list) or not value:
        raise FieldError(where, "expected a non-empty list of numbers")
    for index, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            raise FieldError(f"{where}[{index}]", f"expected a number, got {type(item).__name__}")
    return [float(v) for v in value]


def adapt(record) -> Sample:
    record = require_object(record)
    sample = messages_dialect.adapt(record, field="dialogs")
    annotation = record.get("annotation")
    if annotation is None:
        return sample
    if not isinstance(annotation, Mapping):
        raise FieldError("annotation", f"expected an object, got {type(annotation).__name__}")
    sample.meta.pop("annotation", None)
    sample.meta["annotation"] = {k: v for k, v in annotation.items() if k not in ("instag", "deita")}

    instag = annotation.get("instag")
    if instag is not None:
        tags = instag.get("content") if isinstance(instag, Mapping) else None
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise FieldError("annotation.instag.content", "expected a list of tag strings")
        sample.labels = [(tag, "instag") for tag in dict.fromkeys(t.strip() for t in tags) if tag]

    deita = annotation.get("deita")
    if deita is not None:
        if not isinstance(deita, Mapping):
            raise FieldError("annotation.deita", f"expected an object, got {type(deita).__name__}")
        quality = _numbers(deita.get("quality_scores"), "annotation.deita.quality_scores")
        complexity = _numbers(deita.get("complexity_scores"), "annotation.deita.complexity_scores")
        if len(quality) != len(complexity):
            raise FieldError("annotation.deita", f"{len(quality)} quality scores but {len(complexity)} complexity scores")
        products = [q * c for q, c in zip(quality, complexity)]
        sample.scores = [
            ("deita_quality", sum(quality) / len(quality), {"per_round": quality}),
            ("deita_complexity", sum(complexity) / len(complexity), {"per_round": complexity}),
            ("deita", sum(products) / len(products), {"per_round": products}),
        ]
    return sample
