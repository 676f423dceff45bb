"""QuRating pairwise judgments and Bradley–Terry ratings (princeton-nlp/QuRating, `prompting/score_pairwise.py`).

Each sample is compared with `comparisons` random others (one random pairing of the samples per
round). Every pair is asked in both orders. For the order (a, b) the judge's answer gives
p_ab = P(the second text, b, is preferred); from the order (b, a), p_ba. The calibrated judgment
    P(b ≻ a) = (p_ab + 1 − p_ba) / 2
cancels the judge's position bias. The answer is read
- from log-probs (default): P("B") / (P("A") + P("B")) on the first token; or
- from votes (the reference): `samples` answers at temperature 1; "A" and "B" are counted and the
  order counts only if more than half the answers are a label (`votes_a + votes_b > samples // 2`).
Judgments land in `pairwise_judgments` (one row per unordered pair, both orders kept), so the
rating fit can be redone (`curate score fit-pairwise`). Only confident judgments
(|P − 0.5| ≥ margin, default 0.25 = QuRating's confidence 0.5) enter the Bradley–Terry fit;
a sample with none gets a recorded failure, not a rating. Scorer name: `qurating:<criterion>:<model>`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import orjson
import pyarrow as pa

from curate.models.llm import ChatRequest, ChatResponse, LLMBackend
from curate.scoring import ScoreRow, write_scores
from curate.scoring.quality import bradley_terry
from curate.scoring.quality.criteria import SYSTEM_PROMPT, Criterion
from curate.scoring.quality.logprobs import first_token_top, label_probabilities
from curate.scoring.quality.targets import Targets, render
from curate.store import Store
from curate.store.tables import replace_rows

LABELS = ("A", "B")


def scorer_name(criterion: Criterion, model: str) -> str:
    return f"qurating:{criterion.name}:{model}"


def random_pairs(n: int, comparisons: int, seed: int) -> np.ndarray:
    """(m, 2) index pairs, a < b, distinct: each round pairs up a fresh random permutation."""
    rng = np.random.default_rng(seed)
    rounds = []
    for _ in range(comparisons):
        order = rng.permutation(n)
        half = len(order) // 2 * 2
        rounds.append(order[:half].reshape(-1, 2))
    if not rounds or n < 2:
        return np.zeros((0, 2), dtype=np.int64)
    pairs = np.sort(np.concatenate(rounds), axis=1)
    return np.unique(pairs, axis=0)


def _messages(prompt: str) -> tuple[dict[str, str], ...]:
    return ({"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt})


@dataclass
class OrderReading:
    p_second: float | None          # P(the second text is preferred)
    detail: dict
    error: str | None = None


def read_logprobs(response: ChatResponse, top_logprobs: int) -> OrderReading:
    try:
        top = first_token_top(response)
    except ValueError as error:
        return OrderReading(None, {}, str(error))
    probabilities = label_probabilities(top, LABELS)
    total = probabilities["A"] + probabilities["B"]
    if total <= 0:
        return OrderReading(None, {}, f"neither label A nor B among the top-{top_logprobs} log-probs")
    return OrderReading(probabilities["B"] / total, {"p_a": probabilities["A"], "p_b": probabilities["B"]})


def read_votes(response: ChatResponse, samples: int) -> OrderReading:
    if not response.ok:
        return OrderReading(None, {}, f"the LLM call failed: {response.error}")
    answers = [c.text.strip() for c in response.choices]
    votes_a, votes_b = answers.count("A"), answers.count("B")
    detail = {"votes_a": votes_a, "votes_b": votes_b}
    if votes_a + votes_b <= samples // 2:
        return OrderReading(None, detail, f"only {votes_a + votes_b} of {samples} answers were A or B")
    return OrderReading(votes_b / (votes_a + votes_b), detail)


def judge_pairs(backend: LLMBackend, texts_a: list[str], texts_b: list[str], criterion: Criterion, *,
                read: str, top_logprobs: int, samples: int, seed: int) -> list[tuple[OrderReading, OrderReading]]:
    """For each pair, the readings of the order (a, b) and of the order (b, a)."""
    template = criterion.pairwise_template()

    def request(first: str, second: str) -> ChatRequest:
        prompt = template.format(text_a=first, text_b=second, label_a=LABELS[0], label_b=LABELS[1])
        if read == "logprobs":
            return ChatRequest(_messages(prompt), max_tokens=1, logprobs=top_logprobs)
        return ChatRequest(_messages(prompt), n=samples, temperature=1.0, max_tokens=2, seed=seed)

    requests = [request(a, b) for a, b in zip(texts_a, texts_b)] + [request(b, a) for a, b in zip(texts_a, texts_b)]
    responses = backend.generate(requests)
    reader = (lambda r: read_logprobs(r, top_logprobs)) if read == "logprobs" else (lambda r: read_votes(r, samples))
    readings = [reader(r) for r in responses]
    half = len(texts_a)
    return list(zip(readings[:half], readings[half:]))


def judgment_rows(sample_a, sample_b, readings) -> list[dict]:
    rows = []
    for a, b, (forward, backward) in zip(sample_a, sample_b, readings):
        errors = [f"order {name}: {r.error}" for name, r in (("a,b", forward), ("b,a", backward)) if r.error]
        p_forward = forward.p_second
        p_backward = None if backward.p_second is None else 1.0 - backward.p_second   # P(b ≻ a) asked as (b, a)
        p = None if errors else (p_forward + p_backward) / 2
        rows.append({"sample_a": a, "sample_b": b, "p_forward": p_forward, "p_backward": p_backward, "p": p,
                     "status": "failed" if errors else "ok", "error": "; ".join(errors) or None,
                     "details": orjson.dumps({"forward": forward.detail, "backward": backward.detail}).decode()})
    return rows


def write_judgments(store: Store, scorer: str, rows: list[dict], run_id: str | None) -> None:
    if not rows:
        return
    table = pa.Table.from_pylist(rows, schema=pa.schema([
        ("sample_a", pa.string()), ("sample_b", pa.string()), ("p_forward", pa.float64()),
        ("p_backward", pa.float64()), ("p", pa.float64()), ("status", pa.string()), ("error", pa.string()),
        ("details", pa.string())]))
    table = table.append_column("scorer", pa.repeat(pa.scalar(scorer), len(rows)))
    table = table.append_column("run_id", pa.repeat(pa.scalar(run_id, pa.string()), len(rows)))
    with store.transaction() as con:
        con.register("new_judgments", table)
        con.execute("CREATE OR REPLACE TEMP VIEW new_judgment_rows AS "
                    "SELECT *, current_timestamp AS created_at FROM new_judgments")
        replace_rows(con, "pairwise_judgments", "new_judgment_rows", ["scorer", "sample_a", "sample_b"])
        con.unregister("new_judgments")


def judge(store: Store, backend: LLMBackend, targets: Targets, criterion: Criterion, *, comparisons: int = 4,
          read: str = "logprobs", top_logprobs: int = 20, samples: int = 20, seed: int = 0,
          max_chars: int | None = 2000, run_id: str | None = None, chunk: int = 32,
          progress: Callable[[int], None] | None = None) -> dict[str, int]:
    """Judge random pairs of `targets` (both orders) and store the judgments; returns counts."""
    if read not in ("logprobs", "votes"):
        raise ValueError(f"read must be logprobs or votes, not {read!r}")
    name = scorer_name(criterion, backend.model)
    pairs = random_pairs(len(targets), comparisons, seed)
    texts = [render(m, max_chars) for m in targets.messages]
    unpaired = np.setdiff1d(np.arange(len(targets)), pairs.reshape(-1))
    write_scores(store, name, [ScoreRow(targets.ids[i], None, error="no comparison was drawn for it (an odd one out "
                                                                  "of the random pairings; raise --comparisons)")
                               for i in unpaired], run_id)
    counts = {"pairs": len(pairs), "ok": 0, "failed": 0, "unpaired": len(unpaired)}
    for start in range(0, len(pairs), chunk):
        batch = pairs[start:start + chunk]
        readings = judge_pairs(backend, [texts[i] for i in batch[:, 0]], [texts[j] for j in batch[:, 1]], criterion,
                               read=read, top_logprobs=top_logprobs, samples=samples, seed=seed)
        rows = judgment_rows([targets.ids[i] for i in batch[:, 0]], [targets.ids[j] for j in batch[:, 1]], readings)
        write_judgments(store, name, rows, run_id)
        for row in rows:
            counts[row["status"]] += 1
        if progress:
            progress(len(batch))
    return counts


def fit_ratings(store: Store, scorer: str, *, margin: float = 0.25, l2: float = 0.01,
                label_temperature: float = 1.0, run_id: str | None = None) -> dict[str, int]:
    """Fit Bradley–Terry on every stored judgment of `scorer`; write one rating (or failure) per sample."""
    with store.connect() as con:
        table = con.sql("SELECT sample_a, sample_b, p, status FROM pairwise_judgments WHERE scorer = ? "
                            "ORDER BY sample_a, sample_b", params=[scorer]).to_arrow_table()
    if table.num_rows == 0:
        from curate.errors import CurateError

        raise CurateError(f"no pairwise judgments for scorer {scorer!r} "
                          "(see: curate sql \"SELECT DISTINCT scorer FROM pairwise_judgments\")")
    sample_a = np.asarray(table["sample_a"].to_pylist(), dtype=object)
    sample_b = np.asarray(table["sample_b"].to_pylist(), dtype=object)
    ok = np.asarray(table["status"].to_pylist(), dtype=object) == "ok"
    p = np.asarray(table["p"].to_numpy(zero_copy_only=False), dtype=np.float64)
    items, codes = np.unique(np.concatenate([sample_a, sample_b]), return_inverse=True)
    index_a, index_b = codes[:len(sample_a)], codes[len(sample_a):]
    used = ok & bradley_terry.confident(np.nan_to_num(p, nan=0.5), margin)
    result = bradley_terry.fit(index_a[used], index_b[used], p[used], len(items), l2=l2,
                               label_temperature=label_temperature)
    asked = np.bincount(index_a, minlength=len(items)) + np.bincount(index_b, minlength=len(items))
    answered = np.bincount(index_a[ok], minlength=len(items)) + np.bincount(index_b[ok], minlength=len(items))
    fit_details = {"margin": margin, "l2": l2, "label_temperature": label_temperature,
                   "converged": result.converged}
    rows = []
    for i, sample_id in enumerate(items):
        if result.judgments[i]:
            rows.append(ScoreRow(sample_id, float(result.ratings[i]),
                                 {"confident_judgments": int(result.judgments[i]), "judgments": int(answered[i]),
                                  **fit_details}))
        elif answered[i]:
            rows.append(ScoreRow(sample_id, None, error=f"none of its {answered[i]} judgments is confident "
                                                       f"(|p - 0.5| >= {margin})"))
        else:
            rows.append(ScoreRow(sample_id, None, error=f"all {asked[i]} of its pairwise judgments failed"))
    write_scores(store, scorer, rows, run_id)
    return {"rated": int(sum(r.error is None for r in rows)), "failed": int(sum(r.error is not None for r in rows)),
            "judgments_used": int(used.sum()), "judgments": len(p)}
