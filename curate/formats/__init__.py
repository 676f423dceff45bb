"""Record dialects: each maps one raw record to a canonical Sample, or raises FieldError.

`DIALECTS` is the registry, in detection order (most specific first). `detect` picks the dialect of
a record from its keys; ingest calls it on the first readable record of each source and says
which it chose.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from curate.errors import CurateError
from curate.formats import (
    alpaca,
    gsm8k,
    lima,
    math_problems,
    messages,
    mig_pool,
    prompt_completion,
    r1_searcher,
    search_r1,
    sharegpt,
    simple_deep_searcher,
    zerosearch,
)
from curate.formats.base import FlatForm, Sample, sample_id

__all__ = ["DIALECTS", "Dialect", "Sample", "detect", "get", "sample_id"]


@dataclass(frozen=True)
class Dialect:
    name: str
    adapt: Callable[[Any], Sample]
    matches: Callable[[Mapping[str, Any]], bool]
    description: str
    flat: FlatForm | None = None   # its plain records' fast path, if it has one


def _conversations_of(kind: type) -> Callable[[Mapping], bool]:
    def matches(record: Mapping) -> bool:
        turns = record.get("conversations")
        return isinstance(turns, list) and bool(turns) and isinstance(turns[0], kind)
    return matches


DIALECTS: dict[str, Dialect] = {d.name: d for d in [
    # Search-agent trajectories first: each matches on keys and tags, and a Search-R1 row's
    # prompt/response or an R1-Searcher row's question/answer must not pass for instruction data.
    Dialect("simple-deep-searcher", simple_deep_searcher.adapt, simple_deep_searcher.matches,
            "SimpleDeepSearcher SFT items: question, answer, output [{gen|search_query|doc|doc_gen}]"),
    Dialect("r1-searcher", r1_searcher.adapt, r1_searcher.matches,
            "R1-Searcher eval rollouts: question, answer, gen_text_store with <|begin_of_query|> tags"),
    Dialect("zerosearch", zerosearch.adapt, zerosearch.matches,
            "ZeroSearch rollouts: Search-R1 tags with `Doc i: text` (simulated) results"),
    Dialect("search-r1", search_r1.adapt, search_r1.matches,
            "Search-R1 rollouts: prompt/response, or decoded ChatML text, with <search>/<information> tags"),
    Dialect("mig-pool", mig_pool.adapt, lambda r: "dialogs" in r,
            "MIG annotated pool: dialogs + annotation (InsTag tags, DEITA scores)"),
    Dialect("messages", messages.adapt, lambda r: "messages" in r,
            "OpenAI/Tulu chat: messages [{role, content}]", messages.FLAT),
    Dialect("sharegpt", sharegpt.adapt, _conversations_of(Mapping),
            "ShareGPT: conversations [{from, value}] or [{role, content}]", sharegpt.FLAT),
    Dialect("lima", lima.adapt, _conversations_of(str),
            "LIMA: conversations [str, ...] alternating user/assistant", lima.FLAT),
    Dialect("alpaca", alpaca.adapt, lambda r: "instruction" in r and "output" in r,
            "Alpaca: instruction, input, output", alpaca.FLAT),
    Dialect("prompt-completion", prompt_completion.adapt, lambda r: "prompt" in r and "completion" in r,
            "prompt/completion pairs (trailing <|endoftext|> stripped)", prompt_completion.FLAT),
    Dialect("gsm8k", gsm8k.adapt,
            lambda r: "question" in r and isinstance(r.get("answer"), str) and "####" in r["answer"],
            "GSM8K: question, answer with the gold after ####"),
    Dialect("math", math_problems.adapt, lambda r: "problem" in r and ("solution" in r or "answer" in r),
            "MATH: problem, solution (gold in the last \\boxed{}) or answer"),
]}


def get(name: str) -> Dialect:
    try:
        return DIALECTS[name]
    except KeyError:
        raise CurateError(f"unknown dialect {name!r}; choose from: auto, {', '.join(DIALECTS)}") from None


def detect(record: Any) -> Dialect | None:
    """The first dialect whose keys match the record, or None."""
    if not isinstance(record, Mapping):
        return None
    for dialect in DIALECTS.values():
        if dialect.matches(record):
            return dialect
    return None
