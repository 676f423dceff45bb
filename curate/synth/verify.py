"""Verify a back-translated problem by solving it: sample chains of thought, compare final answers.

RV-Syn keeps a problem when a solver reaches the executed answer: `--verify-samples` chains are
sampled; the problem is kept if any final answer equals the executed one (`answers_match`: MATH
normal form or the same number), the share that did is the solve rate (a difficulty signal), and the
first matching chain becomes the problem's solution.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from curate.answers import answers_match, gsm8k_gold, last_boxed
from curate.models.llm import ChatRequest, ChatResponse

SOLVE_PROMPT = "{problem}\n\nSolve the problem step by step. End with the final answer written as \\boxed{{answer}}."

_ANSWER_IS = re.compile(r"answer\s+is\s*:?\s*\$?\s*(-?[\d,]*\.?\d+(?:/\d+)?)", re.IGNORECASE)
_LAST_NUMBER = re.compile(r"-?\d[\d,]*\.?\d*(?:/\d+)?")


def final_answer(text: str) -> str | None:
    """A chain's final answer: the last \\boxed{}, else after '####', else 'the answer is X', else the last number."""
    for found in (last_boxed(text), gsm8k_gold(text)):
        if found:
            return found
    matches = _ANSWER_IS.findall(text)
    if matches:
        return matches[-1].replace(",", "")
    numbers = _LAST_NUMBER.findall(text)
    return numbers[-1].rstrip(".").replace(",", "") if numbers else None


def verify_request(problem: str, samples: int, *, max_tokens: int, seed: int) -> ChatRequest:
    return ChatRequest(messages=({"role": "user", "content": SOLVE_PROMPT.format(problem=problem)},), n=samples,
                       temperature=0.7, top_p=0.95, max_tokens=max_tokens, seed=seed)


@dataclass
class Verification:
    samples: int
    answers: list[str | None] = field(default_factory=list)
    matches: list[bool] = field(default_factory=list)

    @property
    def solve_rate(self) -> float:
        return sum(self.matches) / self.samples if self.samples else 0.0

    @property
    def verified(self) -> bool:
        return any(self.matches)

    def to_dict(self) -> dict:
        return {"method": "llm", "samples": self.samples, "answers": self.answers, "matches": self.matches,
                "solve_rate": self.solve_rate}


def judge(response: ChatResponse, answer: str) -> tuple[Verification, str | None]:
    """(verification, the first matching chain or None) of an answered verification request."""
    verification = Verification(samples=len(response.choices))
    chain = None
    for choice in response.choices:
        found = final_answer(choice.text)
        match = answers_match(found, answer)
        verification.answers.append(found)
        verification.matches.append(match)
        if match and chain is None:
            chain = choice.text.strip()
    return verification, chain
