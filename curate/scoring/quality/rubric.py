"""A rubric judge: the LLM grades each sample 1–10 on one criterion (QuRating's individual templates).

Two ways to read the grade:
- `logprobs` (default): the expected grade under the judge's
  next-token distribution over "1".."10", renormalised over those grades. Tokenizers that spell
  10 as "1","0" are handled exactly: a second one-token call continues the answer "1" to get
  P("0" | "1"), which splits P("1") into P(1) and P(10). A backend that gives no log-probs has its
  greedy answer read as the grade instead (details say `"read": "text"`).
- `votes` (QuRating's `score_individual.py`): `samples` answers at temperature 1, each parsed as a
  number in range; the score is their mean. No parsable answer is a failure (the reference stores -100).
Scorer name: `rubric:<criterion>:<model>`.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from curate.models.llm import ChatRequest, LLMBackend
from curate.scoring import ScoreRow, write_scores
from curate.scoring.quality.criteria import SYSTEM_PROMPT, Criterion
from curate.scoring.quality.logprobs import expected_grade, first_token_top, label_probabilities
from curate.scoring.quality.targets import Targets, render
from curate.store import Store

GRADE_MIN, GRADE_MAX = 1, 10
GRADES = tuple(range(GRADE_MIN, GRADE_MAX + 1))
_NUMBER = re.compile(r"\s*(\d+(?:\.\d+)?)")


def scorer_name(criterion: Criterion, model: str) -> str:
    return f"rubric:{criterion.name}:{model}"


def _messages(prompt: str) -> tuple[dict[str, str], ...]:
    return ({"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt})


def grade_distribution(first_top: dict[str, float], zero_after_one: dict[str, float] | None) -> dict[str, float]:
    """P(grade) for "1".."10" from the first token's top-k and, if asked, the top-k after "1"."""
    probabilities = label_probabilities(first_top, [str(g) for g in GRADES])
    if zero_after_one is not None and probabilities["1"] > 0:
        p_zero = label_probabilities(zero_after_one, ["0"])["0"]
        one = probabilities["1"]
        probabilities["1"] = one * (1.0 - p_zero)
        probabilities["10"] += one * p_zero
    return probabilities


def parse_vote(text: str) -> float | None:
    match = _NUMBER.match(text)
    if not match:
        return None
    value = float(match.group(1))
    return value if GRADE_MIN <= value <= GRADE_MAX else None


def _logprob_rows(backend, ids, prompts, top_logprobs) -> list[ScoreRow]:
    # Two tokens, so that a backend without log-probs still answers "10" in full (read as text).
    first = backend.generate([ChatRequest(_messages(p), max_tokens=2, logprobs=top_logprobs) for p in prompts])
    tops: list[dict | str | ScoreRow] = []
    for sample_id, response in zip(ids, first):
        if response.ok and not response.choices[0].logprobs:
            tops.append(_text_row(sample_id, response.text))
            continue
        try:
            tops.append(first_token_top(response))
        except ValueError as error:
            tops.append(str(error))
    # Continue "1" by one token where "10" is not a token of its own in the top-k.
    follow = [i for i, top in enumerate(tops) if isinstance(top, dict)
              and label_probabilities(top, ["1"])["1"] > 0 and "10" not in {t.strip() for t in top}]
    continued = backend.generate([
        ChatRequest(_messages(prompts[i]) + ({"role": "assistant", "content": "1"},), continue_final_message=True,
                    max_tokens=1, logprobs=top_logprobs) for i in follow])
    after_one = dict(zip(follow, continued))
    rows = []
    for index, (sample_id, top) in enumerate(zip(ids, tops)):
        if isinstance(top, ScoreRow):
            rows.append(top)
            continue
        if isinstance(top, str):
            rows.append(ScoreRow(sample_id, None, error=top))
            continue
        try:
            zero_top = first_token_top(after_one[index]) if index in after_one else None
            probabilities = grade_distribution(top, zero_top)
            value, weights = expected_grade(probabilities, GRADES, top_logprobs)
        except ValueError as error:
            rows.append(ScoreRow(sample_id, None, error=str(error)))
            continue
        rows.append(ScoreRow(sample_id, value, {"grade_probs": weights, "read": "logprobs"}))
    return rows


def _text_row(sample_id: str, text: str) -> ScoreRow:
    """The grade a backend without log-probs answered, read from its text."""
    grade = parse_vote(text)
    if grade is None:
        return ScoreRow(sample_id, None, error=f"the answer {text!r} is not a grade {GRADE_MIN}-{GRADE_MAX} "
                                               "(and the backend gave no log-probs)")
    return ScoreRow(sample_id, grade, {"read": "text", "answer": text})


def _vote_rows(backend, ids, prompts, samples, seed) -> list[ScoreRow]:
    responses = backend.generate([ChatRequest(_messages(p), n=samples, temperature=1.0, max_tokens=3, seed=seed)
                                  for p in prompts])
    rows = []
    for sample_id, response in zip(ids, responses):
        if not response.ok:
            rows.append(ScoreRow(sample_id, None, error=f"the LLM call failed: {response.error}"))
            continue
        votes = [v for v in (parse_vote(c.text) for c in response.choices) if v is not None]
        if not votes:
            shown = "; ".join(repr(c.text) for c in response.choices[:3])
            rows.append(ScoreRow(sample_id, None, error=f"none of {samples} answers is a grade "
                                                       f"{GRADE_MIN}-{GRADE_MAX} (e.g. {shown})"))
        else:
            rows.append(ScoreRow(sample_id, sum(votes) / len(votes), {"votes": votes, "read": "votes"}))
    return rows


def score_rubric(store: Store, backend: LLMBackend, targets: Targets, criterion: Criterion, *,
                 read: str = "logprobs", top_logprobs: int = 20, samples: int = 20, seed: int = 0,
                 max_chars: int | None = 2000, run_id: str | None = None, chunk: int = 64,
                 progress: Callable[[int], None] | None = None) -> dict[str, int]:
    if read not in ("logprobs", "votes"):
        raise ValueError(f"read must be logprobs or votes, not {read!r}")
    template = criterion.individual_template()
    name = scorer_name(criterion, backend.model)
    counts = {"ok": 0, "failed": 0}
    for start in range(0, len(targets), chunk):
        ids = targets.ids[start:start + chunk]
        prompts = [template.format(text=render(m, max_chars), grade_min=GRADE_MIN, grade_max=GRADE_MAX)
                   for m in targets.messages[start:start + chunk]]
        rows = (_logprob_rows(backend, ids, prompts, top_logprobs) if read == "logprobs"
                else _vote_rows(backend, ids, prompts, samples, seed))
        write_scores(store, name, rows, run_id)
        for row in rows:
            counts[row.status] += 1
        if progress:
            progress(len(ids))
    return counts
