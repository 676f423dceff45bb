"""Answer metrics of open-domain QA, as the search-agent papers compute them.

- `normalize_answer`: SQuAD's normalisation (lowercase, drop ASCII punctuation, drop the articles
  a/an/the, collapse whitespace), the one Search-R1, ZeroSearch and SimpleDeepSearcher use.
- `exact_match`: normalised prediction equals some normalised gold (Search-R1's `em_check`).
- `cover_exact_match`: some normalised gold is a substring of the normalised prediction
  (Search-R1's `subem_check`; SimpleDeepSearcher's `acc`).
- `f1`: token-overlap F1, max over golds, where a yes/no/noanswer on either side that differs from
  the other scores 0 (HotpotQA's `f1_score`, which R1-Searcher's evaluation copies).

A missing prediction (no answer extracted) scores 0 on all three, as Search-R1's reward does.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import NamedTuple

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}]")
_YES_NO = ("yes", "no", "noanswer")


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower, remove punctuation, remove articles, collapse whitespace (in that order)."""
    text = _PUNCTUATION.sub("", text.lower())
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str | None, golds: Sequence[str]) -> float:
    if prediction is None:
        return 0.0
    predicted = normalize_answer(prediction)
    return float(any(normalize_answer(gold) == predicted for gold in golds))


def cover_exact_match(prediction: str | None, golds: Sequence[str]) -> float:
    if prediction is None:
        return 0.0
    predicted = normalize_answer(prediction)
    return float(any(normalize_answer(gold) in predicted for gold in golds))


def _f1_one(predicted: str, gold: str) -> float:
    if predicted in _YES_NO and predicted != gold:
        return 0.0
    if gold in _YES_NO and predicted != gold:
        return 0.0
    predicted_tokens, gold_tokens = predicted.split(), gold.split()
    same = sum((Counter(predicted_tokens) & Counter(gold_tokens)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def f1(prediction: str | None, golds: Sequence[str]) -> float:
    if prediction is None or not golds:
        return 0.0
    predicted = normalize_answer(prediction)
    return max(_f1_one(predicted, normalize_answer(gold)) for gold in golds)


class AnswerScores(NamedTuple):
    em: float
    f1: float
    cover_em: float


def score_answer(prediction: str | None, golds: Sequence[str]) -> AnswerScores:
    return AnswerScores(exact_match(prediction, golds), f1(prediction, golds), cover_exact_match(prediction, golds))


def contains_answer(texts: Sequence[str], answers: Sequence[str], *, normalized: bool = False) -> bool:
    """Whether some normalised answer is a substring of some normalised text (Search-R1's
    `is_retrieval_correct`; like it, an answer that normalises to "" is found in any text).
    `normalized=True`: the texts are normalised already (to check several answers against them)."""
    needles = [normalize_answer(a) for a in answers]
    haystacks = texts if normalized else [normalize_answer(t) for t in texts]
    return any(needle in hay for hay in haystacks for needle in needles)
