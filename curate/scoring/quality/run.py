"""One quality-scoring run: pick the targets, judge them, record the run. The CLI and recipes call this."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from curate.scoring import scored_ids
from curate.scoring.quality import deita as deita_scoring
from curate.scoring.quality import pairwise, rubric
from curate.scoring.quality.criteria import get_criterion
from curate.scoring.quality.deita import score_deita
from curate.scoring.quality.pairwise import fit_ratings, judge
from curate.scoring.quality.rubric import score_rubric
from curate.scoring.quality.targets import load_targets
from curate.store import Store
from curate.store.runs import start_run


@dataclass
class QualityReport:
    run_id: str | None                 # None when there was nothing to score
    counts: dict[str, Any] = field(default_factory=dict)
    scorers: list[str] = field(default_factory=list)   # the scorer names the scores are stored under
    already: int = 0                   # samples skipped because they were scored before


def score_quality(store: Store, llm, method: str, *, criterion: str = "educational_value",
                  criterion_text: str | None = None, read: str = "logprobs", samples: int = 20,
                  comparisons: int = 4, confidence: float = 0.25, l2: float = 0.01,
                  top_logprobs: int | None = None, max_chars: int = 2000, where: str | None = None,
                  limit: int | None = None, rescore: bool = False, seed: int = 0,
                  progress: Callable[[int, str], Callable[[int], None]] | None = None,
                  flow_run_id: str | None = None) -> QualityReport:
    """Score with `method` (deita | rubric | pairwise); `progress(total, what)` returns an update callback."""
    if method not in ("deita", "rubric", "pairwise"):
        raise ValueError(f"unknown quality method {method!r}: deita, rubric or pairwise")
    judged = get_criterion(criterion, criterion_text) if method != "deita" else None
    top = top_logprobs or (deita_scoring.DEFAULT_TOP_LOGPROBS if method == "deita" else 20)
    if method == "deita":
        scorers = list(deita_scoring.scorer_names(llm.model).values())
        resume = scorers[2]            # deita:M has a value only when every turn scored
    elif method == "rubric":
        scorers = [rubric.scorer_name(judged, llm.model)]
        resume = scorers[0]
    else:                              # pairs are redrawn; the response cache makes a re-run cheap
        scorers = [pairwise.scorer_name(judged, llm.model)]
        resume = None
    skip = scored_ids(store, resume) if resume and not rescore else set()
    targets = load_targets(store, where, limit, skip)
    report = QualityReport(run_id=None, scorers=scorers, already=len(skip))
    if not len(targets):
        return report
    params = {"method": method, "backend": getattr(llm, "name", None), "model": llm.model,
              "criterion": judged and judged.name, "criterion_text": criterion_text, "read": read,
              "samples": samples, "comparisons": comparisons, "confidence": confidence, "l2": l2,
              "top_logprobs": top, "max_chars": max_chars, "where": where, "limit": limit, "seed": seed}
    tick = progress or (lambda total, what: lambda n: None)
    with start_run(store, f"score:{method}", params, flow_run_id=flow_run_id) as run:
        if method == "deita":
            counts = score_deita(store, llm, targets, run_id=run.run_id, top_logprobs=top,
                                 progress=tick(len(targets), "deita"))
        elif method == "rubric":
            counts = score_rubric(store, llm, targets, judged, read=read, top_logprobs=top, samples=samples,
                                  seed=seed, max_chars=max_chars, run_id=run.run_id,
                                  progress=tick(len(targets), "rubric"))
        else:
            pairs = len(pairwise.random_pairs(len(targets), comparisons, seed))
            judged_counts = judge(store, llm, targets, judged, comparisons=comparisons, read=read,
                                  top_logprobs=top, samples=samples, seed=seed, max_chars=max_chars,
                                  run_id=run.run_id, progress=tick(pairs, "pairs"))
            fitted = fit_ratings(store, scorers[0], margin=confidence, l2=l2, run_id=run.run_id)
            counts = {"judgments_ok": judged_counts["ok"], "judgments_failed": judged_counts["failed"],
                      "unpaired": judged_counts["unpaired"], **fitted}
        run.counts.update(counts)
    report.run_id, report.counts = run.run_id, dict(counts)
    return report
