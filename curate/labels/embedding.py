"""Zero-shot tagging: each sample's top-k vocabulary labels by cosine similarity, above a floor.

Samples are compared through their stored prompt embeddings (`curate embed`, computed here when
missing); the label strings are embedded with the same model, raw, as MIG embeds its tags. A
sample whose best label stays under the floor gets none: it is recorded as a failure with its
best candidate, so the audit shows what the floor cut.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from curate.errors import CurateError
from curate.labels import Labelled, Vocabulary
from curate.labels.graph import label_vectors
from curate.models.embed import embed_samples, load_embeddings

if TYPE_CHECKING:
    from curate.selectors.base import Pool  # (curate.selectors imports this package)

CHUNK = 16_384   # samples compared with the vocabulary at a time


def top_labels(sample_vectors: np.ndarray, vocab_vectors: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, k) label indices and their cosines, best first; ties go to the lower label index."""
    sims = sample_vectors @ vocab_vectors.T
    k = min(top_k, sims.shape[1])
    if k < sims.shape[1]:
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(k), (len(sims), k))
    part_sims = np.take_along_axis(sims, part, axis=1)
    order = np.lexsort((part, -part_sims), axis=1)
    best = np.take_along_axis(part, order, axis=1)
    return best, np.take_along_axis(sims, best, axis=1)


def by_embedding(pool: Pool, vocab: Vocabulary, *, top_k: int = 5, floor: float = 0.3, model: str | None = None,
                 origin: str = "embedding", batch_size: int = 64, progress: bool = True) -> Iterator[Labelled]:
    """Label every pool sample with its `top_k` nearest vocabulary labels having cosine >= `floor`."""
    if top_k < 1:
        raise CurateError(f"--top-k {top_k}: must be at least 1")
    embed_samples(pool.store, model, "prompt", where=pool.where, batch_size=batch_size, progress=progress)
    vocab_vectors = label_vectors(pool.store, vocab.labels, model)
    names = np.asarray(vocab.labels, dtype=object)
    for start in range(0, len(pool), CHUNK):
        ids = pool.ids[start:start + CHUNK]
        result = Labelled(origin=origin, covered=ids)
        best, sims = top_labels(load_embeddings(pool.store, ids, model, "prompt"), vocab_vectors, top_k)
        keep = sims >= floor
        rows = np.repeat(np.arange(len(ids)), keep.sum(axis=1))
        result.sample_ids = ids[rows].tolist()
        result.labels = names[best[keep]].tolist()
        result.scores = sims[keep].astype(float).tolist()
        result.details = [None] * len(result.labels)
        for i in np.flatnonzero(~keep[:, 0]):
            result.fail(ids[i], f"no vocabulary label reaches the floor {floor} "
                                f"(best: {names[best[i, 0]]!r} at {sims[i, 0]:.3f})")
        yield result
