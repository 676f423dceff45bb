"""Reading a judge's answer off the first token's top log-probs.

Backends report the top-k alternatives at each generated position as `{decoded token: logprob}`.
A label ("3", "B") may appear under several spellings (" 3", "3"): their probabilities add up.
A label absent from the top-k has an unknown probability below the k-th; the caller decides
whether that is a failure (it is, for every method here: the stored value would otherwise rest on
a guess).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from curate.models.llm import ChatResponse


def label_probabilities(top: Mapping[str, float], labels: Sequence[str]) -> dict[str, float]:
    """Probability of each label among the top alternatives (0.0 where no spelling of it appears)."""
    found = dict.fromkeys(labels, 0.0)
    for token, logprob in top.items():
        key = token.strip()
        if key in found:
            found[key] += math.exp(logprob)
    return found


def first_token_top(response: ChatResponse) -> dict[str, float]:
    """The first generated token's top alternatives; raises ValueError when the backend gave none."""
    if not response.ok:
        raise ValueError(f"the LLM call failed: {response.error}")
    logprobs = response.choices[0].logprobs
    if not logprobs:
        raise ValueError("the backend returned no log-probs (it must support them for this method)")
    return logprobs[0].top


def expected_grade(probabilities: Mapping[str, float], grades: Sequence[int], top_k: int) -> tuple[float, list[float]]:
    """Σ g·p(g) over `grades`, with p renormalised over them (= softmax over their logits).

    Raises ValueError naming the grades missing from the top-k: their logits are unknown, and
    guessing them (DEITA's released scorer returns 3.0 then) would store an invented score.
    """
    missing = [str(g) for g in grades if probabilities.get(str(g), 0.0) <= 0.0]
    if missing:
        raise ValueError(f"grade token(s) {', '.join(missing)} not among the top-{top_k} log-probs "
                         "(raise --top-logprobs, or use a judge that answers with a grade)")
    mass = [probabilities[str(g)] for g in grades]
    total = sum(mass)
    weights = [m / total for m in mass]
    return sum(g * w for g, w in zip(grades, weights)), weights
