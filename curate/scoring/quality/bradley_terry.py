"""Bradley–Terry ratings from soft pairwise judgments (QuRating's training objective, fitted directly).

Each judgment says P(b ≻ a) = p for a pair (a, b). The model is P(b ≻ a) = σ(s_b − s_a). We minimise
the binary cross-entropy between σ(s_b − s_a) and p over all judgments, plus (l2 / 2)·‖s‖², with
L-BFGS on the exact gradient. QuRating trains a neural rater with the same loss
(`training/train_preference_model.py`: sigmoid of logit differences, BCE against the calibrated
label, optional label temperature); fitting free ratings per sample is that model with one
parameter per item. The L2 term fixes the free offset (ratings centre near 0) and keeps items
with one-sided judgments finite.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, logit


@dataclass
class BTFit:
    ratings: np.ndarray          # one per item
    judgments: np.ndarray        # how many judgments involved each item
    loss: float
    converged: bool
    iterations: int


def confident(p: np.ndarray, margin: float) -> np.ndarray:
    """Judgments at least `margin` away from a coin flip: |p − 0.5| ≥ margin.

    QuRating's `confidence_mask(labels, c)` keeps |p − 0.5| ≥ c / 2; its default c = 0.5 is margin 0.25.
    """
    return np.abs(np.asarray(p) - 0.5) >= margin - 1e-12


def fit(a: np.ndarray, b: np.ndarray, p: np.ndarray, n_items: int, *, l2: float = 0.01,
        label_temperature: float = 1.0, tol: float = 1e-9, max_iter: int = 1000) -> BTFit:
    """Ratings s (length n_items) maximising Σ log-likelihood of p under σ(s_b − s_a), L2-regularised."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    if label_temperature != 1.0:     # QuRating's bce_with_temperature: sharpen or soften the labels
        p = expit(logit(np.clip(p, 1e-6, 1 - 1e-6)) / label_temperature)
    if l2 <= 0:
        raise ValueError("l2 must be positive (without it the ratings have no fixed offset)")

    def objective(s: np.ndarray) -> tuple[float, np.ndarray]:
        d = s[b] - s[a]
        loss = np.sum(np.logaddexp(0.0, d) - p * d) + 0.5 * l2 * s @ s     # BCE(σ(d), p) in stable form
        residual = expit(d) - p
        grad = np.bincount(b, residual, n_items) - np.bincount(a, residual, n_items) + l2 * s
        return float(loss), grad

    result = minimize(objective, np.zeros(n_items), jac=True, method="L-BFGS-B",
                      options={"maxiter": max_iter, "gtol": tol, "ftol": tol})
    counts = np.bincount(a, minlength=n_items) + np.bincount(b, minlength=n_items)
    return BTFit(ratings=result.x, judgments=counts, loss=float(result.fun), converged=bool(result.success),
                 iterations=int(result.nit))
