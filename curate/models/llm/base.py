"""One chat interface for every LLM backend.

A stage builds `ChatRequest`s and calls `backend.generate(requests)`: one call with many requests
lets each backend batch (transformers), run concurrently (openai) or schedule (vLLM) as it does best.
Each request gets a `ChatResponse`: its choices, or its error. A failed request is an error, never a
default answer; the caller decides what a failure means and records it.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson


@dataclass(frozen=True)
class ChatRequest:
    messages: tuple[dict[str, str], ...]     # [{role, content}, ...]
    n: int = 1                               # completions to sample
    temperature: float = 0.0                 # 0 = greedy
    top_p: float = 1.0
    max_tokens: int = 256
    stop: tuple[str, ...] = ()               # generation ends at the first of these
    include_stop: bool = False               # keep the stop string at the end of the text
    continue_final_message: bool = False     # continue the last (assistant) message instead of a new turn
    seed: int | None = None
    logprobs: int = 0                        # top alternatives to report per token (0 = no log-probs)
    logprob_tokens: int = 1                  # for how many of the first generated tokens

    def __post_init__(self):
        object.__setattr__(self, "messages", tuple(dict(m) for m in self.messages))
        object.__setattr__(self, "stop", tuple(self.stop))
        if self.continue_final_message and (not self.messages or self.messages[-1]["role"] != "assistant"):
            raise ValueError("continue_final_message needs a final assistant message to continue")
        if self.n < 1 or self.max_tokens < 1:
            raise ValueError("n and max_tokens must be at least 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def cache_key(self, backend: str, model: str) -> str:
        payload = orjson.dumps([backend, model, self.to_dict()], option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(payload).hexdigest()


@dataclass
class TokenLogprob:
    token: str                               # the generated token, decoded
    logprob: float
    top: dict[str, float]                    # the most likely alternatives at this position (token -> logprob)


@dataclass
class Choice:
    text: str
    finish_reason: str                       # stop (a stop string or end of turn) | length
    tokens: int = 0                          # generated tokens
    logprobs: list[TokenLogprob] | None = None


@dataclass
class ChatResponse:
    choices: list[Choice] = field(default_factory=list)
    prompt_tokens: int = 0
    error: str | None = None
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def text(self) -> str:
        """The first choice's text (most stages ask for one)."""
        if not self.ok:
            raise RuntimeError(f"the request failed: {self.error}")
        return self.choices[0].text

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("cached")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, cached: bool = False) -> ChatResponse:
        choices = [Choice(text=c["text"], finish_reason=c["finish_reason"], tokens=c.get("tokens", 0),
                          logprobs=[TokenLogprob(**t) for t in c["logprobs"]] if c.get("logprobs") else None)
                   for c in data["choices"]]
        return cls(choices=choices, prompt_tokens=data.get("prompt_tokens", 0), error=data.get("error"),
                   cached=cached)


def truncate_at_stop(text: str, stop: Sequence[str], include_stop: bool) -> tuple[str, bool]:
    """Cut `text` at the earliest stop string; returns (text, whether one was found)."""
    best = None
    for s in stop:
        index = text.find(s)
        if index >= 0 and (best is None or index < best[0]):
            best = (index, s)
    if best is None:
        return text, False
    index, s = best
    return text[: index + len(s)] if include_stop else text[:index], True


class LLMBackend(ABC):
    """A chat model behind `generate`. Subclasses set `name` and `model`."""

    name: str
    model: str

    @abstractmethod
    def generate(self, requests: Sequence[ChatRequest]) -> list[ChatResponse]:
        """One response per request, in order; a failed request carries `error`, the rest still answer."""

    def close(self) -> None:
        """Release what the backend holds (servers, engines); a no-op by default."""
