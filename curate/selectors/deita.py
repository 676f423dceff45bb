"""DEITA's score-first, diversity-aware selection (hkust-nlp/deita, `selection/filter`).

Samples are walked from the highest score down; one is kept only if its cosine similarity to every
sample kept so far is at most `threshold` (the Repr filter), until the budget is filled. The
reference (`IterativeFilter.filter`, batch size 1, its default) compares each candidate with all
kept ones; here candidates come in chunks: one matrix product against the kept set drops the
chunk's candidates already too close to it, and the survivors are resolved in order inside the
chunk, so the result is the same as the one-at-a-time walk (tests pin it) at matrix-product speed.
Ties in score keep pool order (the reference sorts with pandas' unstable default).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from curate.models.embed import load_embeddings
from curate.selectors.base import Pool, Selection, Selector, register
from curate.selectors.quality import descending, require_scores


@dataclass
class ReprResult:
    kept: np.ndarray          # positions (in the walked order) of the kept samples, in order
    blocker: np.ndarray       # per position: the kept position it was too similar to; -1 kept, -2 never reached
    similarity: np.ndarray    # per position: that similarity (NaN if kept or never reached)


def repr_filter(vectors: np.ndarray, threshold: float, budget: int, chunk: int = 2048) -> ReprResult:
    """Walk `vectors` (L2-normalised rows, in priority order); keep a row iff cos ≤ threshold to all kept."""
    n, dim = vectors.shape
    budget = min(budget, n)
    kept = np.empty(budget, dtype=np.int64)
    kept_vectors = np.empty((budget, dim), dtype=np.float32)
    n_kept = 0
    blocker = np.full(n, -2, dtype=np.int64)
    similarity = np.full(n, np.nan, dtype=np.float32)
    start = 0
    while start < n and n_kept < budget:
        block = np.ascontiguousarray(vectors[start:start + chunk], dtype=np.float32)
        alive = np.ones(len(block), dtype=bool)
        if n_kept:
            against_kept = block @ kept_vectors[:n_kept].T
            nearest = against_kept.argmax(axis=1)
            nearest_sim = against_kept[np.arange(len(block)), nearest]
            alive = nearest_sim <= threshold
            dead = np.flatnonzero(~alive)
            blocker[start + dead] = kept[nearest[dead]]
            similarity[start + dead] = nearest_sim[dead]
        candidates = np.flatnonzero(alive)
        inner = block[candidates] @ block[candidates].T
        killed = np.zeros(len(candidates), dtype=bool)
        end = len(block)
        for t, position in enumerate(candidates):
            if killed[t]:
                continue
            kept[n_kept] = start + position
            kept_vectors[n_kept] = block[position]
            n_kept += 1
            blocker[start + position] = -1
            close = inner[t, t + 1:] > threshold
            newly = np.flatnonzero(close & ~killed[t + 1:]) + t + 1
            blocker[start + candidates[newly]] = start + position
            similarity[start + candidates[newly]] = inner[t, newly]
            killed[t + 1:] |= close
            if n_kept == budget:        # the walk stops here: the rest of the block is never reached
                end = position + 1
                break
        # Candidates after the stop point were never reached: undo what the kept-set pass wrote for them.
        blocker[start + end:start + len(block)] = -2
        similarity[start + end:start + len(block)] = np.nan
        start += len(block)
    return ReprResult(kept=kept[:n_kept], blocker=blocker, similarity=similarity)


@register
class DeitaSelector(Selector):
    """Highest score first, skipping samples within cosine `threshold` of one already kept (DEITA)."""

    name = "deita"

    def __init__(self, score: str, threshold: float = 0.9, embedding_model: str | None = None,
                 view: str = "conversation", chunk: int = 2048):
        self.score = score
        self.threshold = threshold
        self.embedding_model = embedding_model
        self.view = view
        self.chunk = chunk

    def select(self, pool: Pool, budget: int | None) -> Selection:
        values = require_scores(pool, self.score)
        scored = np.flatnonzero(~np.isnan(values))
        order = scored[descending(values[scored])]
        vectors = load_embeddings(pool.store, pool.ids[order], self.embedding_model, self.view)
        result = repr_filter(vectors, self.threshold, len(order) if budget is None else budget, self.chunk)
        kept = order[result.kept]
        too_close = np.flatnonzero(result.blocker >= 0)
        unreached = np.flatnonzero(result.blocker == -2)
        unscored = np.flatnonzero(np.isnan(values))
        close_details = [{"nearest_kept": pool.ids[order[result.blocker[i]]],
                          "cosine": round(float(result.similarity[i]), 4)} for i in too_close]
        return Selection(
            ids=pool.ids[kept].tolist(), scores=values[kept].tolist(),
            reasons=[f"by {self.score}, cosine <= {self.threshold} to every kept sample"] * len(kept),
            dropped_ids=(pool.ids[order[too_close]].tolist() + pool.ids[order[unreached]].tolist()
                         + pool.ids[unscored].tolist()),
            dropped_reasons=([f"cosine > {self.threshold} to a kept sample"] * len(too_close)
                             + ["budget filled before it"] * len(unreached) + [f"no score {self.score}"] * len(unscored)),
            dropped_details=close_details + [None] * (len(unreached) + len(unscored)),
            counts={"scored": len(scored), "too_similar": len(too_close),
                    "not_reached": len(unreached), "unscored": len(unscored)})
