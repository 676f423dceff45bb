"""QuRating's selection: sample by quality without replacement, p ∝ exp(s / τ) (`data_tools/select_subset.py`).

The score is z-normalised over the pool's scored samples (`--normalize`), divided by τ, perturbed
with Gumbel noise, and the top of that order is taken: the Gumbel-top-k trick, which is exactly
sampling without replacement with probability ∝ exp(z / τ). τ = 0 is plain top-k. The budget is a
count, or a number of tokens: then the order is walked until the running total reaches the budget,
the sample that crosses it included (the reference's `percentile_indices`).
"""

from __future__ import annotations

import numpy as np

from curate.errors import CurateError
from curate.selectors.base import Pool, Selection, Selector, register


def require_scores(pool: Pool, score: str) -> np.ndarray:
    """The pool's values of `score` (NaN where missing); an error if no sample has one."""
    values = pool.scores(score)
    if np.isnan(values).all():
        raise CurateError(f"no sample of the pool has a score {score!r} "
                          "(see: curate sql \"SELECT scorer, status, count(*) FROM scores GROUP BY ALL\")")
    return values


def z_normalise(values: np.ndarray) -> np.ndarray:
    std = values.std()
    return (values - values.mean()) / std if std > 0 else np.zeros_like(values)


def gumbel_keys(values: np.ndarray, temperature: float, rng: np.random.Generator, normalise: bool = True) -> np.ndarray:
    """Sort keys whose descending order is a draw without replacement, p ∝ exp(z / τ); τ = 0: z itself."""
    z = z_normalise(values) if normalise else np.asarray(values, dtype=np.float64)
    if temperature == 0:
        return z
    return z / temperature + rng.gumbel(size=len(z))


def descending(keys: np.ndarray) -> np.ndarray:
    """Indices by key, highest first; ties keep their original order."""
    return np.argsort(-keys, kind="stable")


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    from curate.models.llm.transformers_backend import resolve

    source, gguf_file = resolve(name)
    return AutoTokenizer.from_pretrained(source, **({"gguf_file": gguf_file} if gguf_file else {}))


def conversation_texts(pool: Pool, indices: np.ndarray) -> list[str]:
    """Each sample's turns' contents joined by newlines, in the order of `indices` (pool positions)."""
    table = pool.fetch("WITH wanted AS (SELECT unnest(?::BIGINT[]) AS pool_index) "
                       "SELECT pool_index, list_transform(s.messages, lambda m: m.content) AS contents "
                       "FROM wanted JOIN pool p USING (pool_index) JOIN samples s USING (sample_id)",
                       [indices.tolist()])
    by_index = dict(zip(table["pool_index"].to_pylist(), table["contents"].to_pylist()))
    return ["\n".join(by_index[int(i)]) for i in indices]


def take_tokens(pool: Pool, ordered: np.ndarray, budget_tokens: int, tokenizer: str,
                chunk: int = 8192) -> np.ndarray:
    """Token counts of the ordered samples, through the one whose running total reaches the budget
    (the sample that crosses it included, as the reference's `percentile_indices`)."""
    encoder = load_tokenizer(tokenizer)
    counts: list[np.ndarray] = []
    total = 0
    for start in range(0, len(ordered), chunk):
        texts = conversation_texts(pool, ordered[start:start + chunk])
        lengths = np.asarray(encoder(texts, add_special_tokens=False, return_length=True,
                                     return_attention_mask=False)["length"], dtype=np.int64)
        running = total + np.cumsum(lengths)
        reached = np.flatnonzero(running >= budget_tokens)
        if len(reached):
            counts.append(lengths[:reached[0] + 1])
            break
        counts.append(lengths)
        total = int(running[-1])
    return np.concatenate(counts) if counts else np.zeros(0, dtype=np.int64)


@register
class QualitySelector(Selector):
    """Sample by a stored score with temperature (QuRating); τ = 0 takes the top."""

    name = "quality"

    def __init__(self, score: str, temperature: float = 1.0, budget_tokens: int | None = None,
                 normalize: bool = True, seed: int = 0, tokenizer: str = "smollm2-135m"):
        self.score = score
        self.temperature = temperature
        self.budget_tokens = budget_tokens
        self.normalize = normalize
        self.seed = seed
        self.tokenizer = tokenizer

    def select(self, pool: Pool, budget: int | None) -> Selection:
        if self.temperature < 0:
            raise CurateError("--temperature must be >= 0")
        if (budget is None) == (self.budget_tokens is None):
            raise CurateError("give exactly one of --budget (samples) or --budget-tokens")
        values = require_scores(pool, self.score)
        scored = np.flatnonzero(~np.isnan(values))
        keys = gumbel_keys(values[scored], self.temperature, np.random.default_rng(self.seed), self.normalize)
        order = descending(keys)
        details = None
        if self.budget_tokens is not None:
            tokens = take_tokens(pool, scored[order], self.budget_tokens, self.tokenizer)
            take = len(tokens)
            details = [{"key": float(keys[order[i]]), "tokens": int(tokens[i])} for i in range(take)]
        else:
            take = min(budget, len(order))
            details = [{"key": float(keys[order[i]])} for i in range(take)]
        chosen, rest = scored[order[:take]], scored[order[take:]]
        unscored = np.flatnonzero(np.isnan(values))
        how = f"top by {self.score}" if self.temperature == 0 else f"Gumbel draw by {self.score}/τ={self.temperature}"
        return Selection(
            ids=pool.ids[chosen].tolist(), scores=values[chosen].tolist(), reasons=[how] * take, details=details,
            dropped_ids=pool.ids[rest].tolist() + pool.ids[unscored].tolist(),
            dropped_reasons=["below the cut"] * len(rest) + [f"no score {self.score}"] * len(unscored),
            counts={"scored": len(scored), "unscored": len(unscored),
                    **({"tokens": int(sum(d["tokens"] for d in details))} if self.budget_tokens else {})})
