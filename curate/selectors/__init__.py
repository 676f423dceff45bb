"""Selectors: each picks a subset of a Pool within a budget and says why (see base.py)."""

from curate.selectors import deita, difficulty, kmeans, mig, quality, random, trajectory  # noqa: F401  (registers)
from curate.selectors.base import REGISTRY, Pool, Selection, Selector, get_selector, register, run_selection

__all__ = ["REGISTRY", "Pool", "Selection", "Selector", "get_selector", "register", "run_selection"]
