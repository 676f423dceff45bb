"""Uniform random selection: the baseline every other selector should beat."""

from __future__ import annotations

import numpy as np

from curate.selectors.base import Pool, Selection, Selector, register


@register
class RandomSelector(Selector):
    """`budget` samples drawn uniformly without replacement; the same seed and pool give the same draw."""

    name = "random"

    def __init__(self, seed: int = 0):
        self.seed = seed

    def select(self, pool: Pool, budget: int | None) -> Selection:
        budget = len(pool) if budget is None else min(budget, len(pool))
        order = np.random.default_rng(self.seed).permutation(len(pool))[:budget]
        ids = pool.ids[order].tolist()
        return Selection(ids=ids, scores=[None] * len(ids), reasons=["random draw"] * len(ids))
