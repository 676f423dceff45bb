"""Judges of a finished reasoning chain against the problem's gold answer.

- `RuleJudge`: the chain's final answer (`curate.answers.final_answer`: `\\boxed{}`, `####`, "The
  answer is") equals the gold one (`curate.answers.answers_match`: MATH normal form, or the same
  number, fractions included).
- `LLMJudge`: the reference's judge (ThinkLite-VL, `evaluate_terminal_state`): its prompt with the
  question, the ground-truth answer and the chain; the verdict is "true" in the reply's first sentence.
  The reference decodes with the judge model's own generation config (its Qwen2.5-7B-Instruct: sampling
  at temperature 0.7, top_p 0.8; top_k 20 and repetition penalty 1.05 have no equivalent in our
  request), at most 512 new tokens: those are the defaults here.

Both take every pending judgement of a round at once, so an LLM judge sends them in one call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from curate.answers import answers_match, final_answer
from curate.mcts.prompts import JUDGE_SYSTEM, judge_messages, judge_says_true
from curate.models.llm import ChatRequest, LLMBackend


@dataclass(frozen=True)
class JudgeItem:
    question: str
    gold: str
    chain: str


@dataclass
class Judgement:
    verdict: bool | None                 # None when the judgement failed (see error)
    error: str | None = None
    prompt_tokens: int = 0
    tokens: int = 0


class RuleJudge:
    kind = "rule"

    def judge(self, items: Sequence[JudgeItem]) -> list[Judgement]:
        return [Judgement(verdict=answers_match(final_answer(item.chain), item.gold)) for item in items]

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind}


class LLMJudge:
    kind = "llm"

    def __init__(self, backend: LLMBackend, *, temperature: float = 0.7, top_p: float = 0.8,
                 max_tokens: int = 512, seed: int = 0, system: str = JUDGE_SYSTEM):
        self.backend = backend
        self.temperature = temperature
        self.top_p = top_p
        self.max_tokens = max_tokens
        self.seed = seed
        self.system = system

    def request(self, item: JudgeItem) -> ChatRequest:
        return ChatRequest(messages=judge_messages(item.question, item.gold, item.chain, self.system),
                           temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens,
                           seed=self.seed)

    def judge(self, items: Sequence[JudgeItem]) -> list[Judgement]:
        if not items:
            return []
        responses = self.backend.generate([self.request(item) for item in items])
        judgements = []
        for response in responses:
            if not response.ok:
                judgements.append(Judgement(None, error=f"judge call failed: {response.error}"))
                continue
            judgements.append(Judgement(judge_says_true(response.text), prompt_tokens=response.prompt_tokens,
                                        tokens=response.choices[0].tokens))
        return judgements

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "backend": self.backend.name, "model": self.backend.model,
                "temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens,
                "seed": self.seed, "system": self.system}
