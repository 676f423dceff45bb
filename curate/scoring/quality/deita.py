"""DEITA's complexity and quality scores (hkust-nlp/deita, `selection/scorer`).

Each user turn is scored twice: complexity from the instruction alone, quality from the instruction
and its response, each with DEITA's prompt template (exact text below). The score is the expected
grade under the judge's next-token distribution restricted to "1".."6":
    score = Σ_{k=1..6} k · softmax(logit("1"), ..., logit("6"))_k
(`Scorer.infer_score`). Per sample we store, each keyed by the judge model:
    deita_complexity:M, deita_quality:M   mean over turns (per-turn values in details)
    deita:M                                Σ_turns complexity × quality, DEITA's combined score
                                           (`Combined_Filter._sort`: product of the per-turn lists, summed)
    deita_mean:M                           mean over turns of complexity × quality (MIG's convention)

DEITA's released code returns 3.0 when the log-probs are missing; here the sample is recorded as a
failure with the reason instead. The reference feeds the template as raw text to its fine-tuned
scorers; through the chat interface it is the user message (what a chat judge needs).
"""

from __future__ import annotations

from collections.abc import Callable

from curate.models.llm import ChatRequest, LLMBackend
from curate.scoring import ScoreRow, write_scores
from curate.scoring.quality.logprobs import expected_grade, first_token_top, label_probabilities
from curate.scoring.quality.targets import Targets, user_turns
from curate.store import Store

COMPLEXITY_TEMPLATE = ("You are a helpful assistant. Please identify the complexity score of the following user "
                       "query. \n##Query: {instruction}  \n##Complexity: ")
QUALITY_TEMPLATE = ("You are a helpful assistant. Please identify the quality score of the Response corresponding "
                    "to the Question. \n #Question#:\n{instruction}\n#Response#:\n{output} \n##Quality: ")
GRADES = (1, 2, 3, 4, 5, 6)
DEFAULT_TOP_LOGPROBS = 1000     # DEITA's vLLM path asks for 1000 log-probs; its HF path reads every logit


def scorer_names(model: str) -> dict[str, str]:
    return {kind: f"{kind}:{model}" for kind in ("deita_complexity", "deita_quality", "deita", "deita_mean")}


def _request(text: str, top_logprobs: int) -> ChatRequest:
    return ChatRequest(messages=({"role": "user", "content": text},), max_tokens=1, temperature=0.0,
                       logprobs=top_logprobs, logprob_tokens=1)


def _grade(response, top_logprobs: int) -> tuple[float, list[float]]:
    top = first_token_top(response)
    return expected_grade(label_probabilities(top, [str(g) for g in GRADES]), GRADES, top_logprobs)


def _sample_rows(sample_id: str, turns, complexity, quality, names) -> list[tuple[str, ScoreRow]]:
    """The four rows of one sample from its per-turn (value or error) results."""
    def summary(results, label):
        errors = [f"turn {i + 1} {label}: {r}" for i, r in enumerate(results) if isinstance(r, str)]
        return (None, "; ".join(errors)) if errors else ([r[0] for r in results], None)

    if not turns:
        error = "no user turn to score"
        return [(name, ScoreRow(sample_id, None, error=error)) for name in names.values()]
    c_values, c_error = summary(complexity, "complexity")
    q_values, q_error = summary(quality, "quality")
    rows = [
        (names["deita_complexity"], ScoreRow(sample_id, None, error=c_error) if c_error else
         ScoreRow(sample_id, sum(c_values) / len(c_values), {"per_turn": c_values,
                                                              "grade_probs": [r[1] for r in complexity]})),
        (names["deita_quality"], ScoreRow(sample_id, None, error=q_error) if q_error else
         ScoreRow(sample_id, sum(q_values) / len(q_values), {"per_turn": q_values,
                                                             "grade_probs": [r[1] for r in quality]})),
    ]
    error = "; ".join(e for e in (c_error, q_error) if e)
    if error:
        rows += [(names["deita"], ScoreRow(sample_id, None, error=error)),
                 (names["deita_mean"], ScoreRow(sample_id, None, error=error))]
    else:
        products = [c * q for c, q in zip(c_values, q_values)]
        rows += [(names["deita"], ScoreRow(sample_id, sum(products), {"per_turn": products})),
                 (names["deita_mean"], ScoreRow(sample_id, sum(products) / len(products), {"per_turn": products}))]
    return rows


def score_deita(store: Store, backend: LLMBackend, targets: Targets, *, run_id: str | None = None,
                top_logprobs: int = DEFAULT_TOP_LOGPROBS, chunk: int = 64,
                progress: Callable[[int], None] | None = None) -> dict[str, int]:
    """Score `targets` chunk by chunk (each chunk's LLM calls cached, its scores committed)."""
    names = scorer_names(backend.model)
    counts = {"ok": 0, "failed": 0}
    for start in range(0, len(targets), chunk):
        ids = targets.ids[start:start + chunk]
        conversations = [user_turns(m) for m in targets.messages[start:start + chunk]]
        requests, owners = [], []
        for index, turns in enumerate(conversations):
            for turn, (instruction, response) in enumerate(turns):
                requests.append(_request(COMPLEXITY_TEMPLATE.format(instruction=instruction), top_logprobs))
                requests.append(_request(QUALITY_TEMPLATE.format(instruction=instruction, output=response),
                                         top_logprobs))
                owners.append((index, turn))
        responses = backend.generate(requests) if requests else []
        results = [([None] * len(t), [None] * len(t)) for t in conversations]
        for n, (index, turn) in enumerate(owners):
            for kind, response in enumerate(responses[2 * n:2 * n + 2]):
                try:
                    results[index][kind][turn] = _grade(response, top_logprobs)
                except ValueError as error:
                    results[index][kind][turn] = str(error)
        by_scorer: dict[str, list[ScoreRow]] = {}
        for sample_id, turns, (complexity, quality) in zip(ids, conversations, results):
            for name, row in _sample_rows(sample_id, turns, complexity, quality, names):
                by_scorer.setdefault(name, []).append(row)
            failed = any(isinstance(r, str) for r in complexity + quality) or not turns
            counts["failed" if failed else "ok"] += 1
        for name, rows in by_scorer.items():
            write_scores(store, name, rows, run_id)
        if progress:
            progress(len(ids))
    return counts
