"""Many problems' searches at once, so the policy backend sees full batches.

The reference searches one problem at a time with batch size 1. Here up to `concurrency` searches
are in flight; each round gathers what all of them need (judgements first, then the next steps) and
sends each kind in one call: one `judge.judge(...)` per wave of verdicts, one `policy.generate(...)`
for every pending step. A finished problem's place goes to the next one at once.

Every request is a pure function of the problem, the configuration and the answers so far (seeds
included), so after a crash a re-run asks exactly the same requests again: the response cache
answers those already made, and the search goes on from where it was.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from curate.mcts.judges import JudgeItem, LLMJudge, RuleJudge
from curate.mcts.prompts import STEP_END, step_messages
from curate.mcts.search import Outcome, SearchConfig, Step, TreeSearch, Verdict
from curate.models.llm import ChatRequest, LLMBackend


@dataclass(frozen=True)
class Problem:
    sample_id: str
    question: str
    gold: str


@dataclass(frozen=True)
class Sampling:
    """How the policy samples a step (the reference's GenerationConfig and generate arguments).

    The reference's fresh `GenerationConfig(temperature=0.5, do_sample=True, top_p=0.9)` also meant
    top_k = 50 (transformers' default); a request has no top_k: backends apply their own default
    (transformers: the model's generation config, 50 unless it says otherwise).
    """

    temperature: float = 0.5
    top_p: float = 0.9
    max_new_tokens: int = 2048

    def request(self, question: str, need: Step) -> ChatRequest:
        messages, continue_final = step_messages(question, need.steps)
        return ChatRequest(messages=messages, n=need.n, temperature=self.temperature, top_p=self.top_p,
                           max_tokens=self.max_new_tokens, stop=(STEP_END,), include_stop=True,
                           continue_final_message=continue_final, seed=need.seed)


@dataclass
class ProblemResult:
    problem: Problem
    outcome: Outcome | None = None          # None when the search failed
    error: str | None = None
    generation_calls: int = 0               # policy requests (one per expansion or rollout step)
    sequences: int = 0                      # steps sampled
    prompt_tokens: int = 0
    generated_tokens: int = 0
    judge_calls: int = 0                    # chains judged (each one request with an LLM judge)
    judge_prompt_tokens: int = 0
    judge_tokens: int = 0
    search: TreeSearch | None = field(default=None, repr=False)


class _InFlight:
    def __init__(self, problem: Problem, config: SearchConfig):
        self.search = TreeSearch(config, random.Random(f"{config.seed}:{problem.sample_id}"))
        self.result = ProblemResult(problem, search=self.search)
        self.steps = self.search.run()
        self.need: Step | Verdict | None = None


class SearchDriver:
    """Runs searches `concurrency` at a time; `run(problems)` yields each result as it finishes."""

    def __init__(self, policy: LLMBackend, judge: RuleJudge | LLMJudge, config: SearchConfig | None = None,
                 sampling: Sampling | None = None, *, concurrency: int = 32):
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.policy = policy
        self.judge = judge
        self.config = config or SearchConfig()
        self.sampling = sampling or Sampling()
        self.concurrency = concurrency
        self.requests = 0          # policy and judge requests asked (answered by the cache or not)

    def run(self, problems: Iterable[Problem], on_round: Callable[[], None] | None = None) -> Iterator[ProblemResult]:
        """Search every problem; `on_round` is called after each round (a progress display, say)."""
        waiting = iter(problems)
        flying: list[_InFlight] = []
        done: list[ProblemResult] = []

        def advance(item: _InFlight, answer: object) -> None:
            try:
                item.need = item.steps.send(answer)
            except StopIteration as stop:
                item.result.outcome = stop.value
                flying.remove(item)
                done.append(item.result)

        def fail(item: _InFlight, error: str) -> None:
            item.steps.close()
            item.result.error = error
            flying.remove(item)
            done.append(item.result)

        def fill() -> None:
            while len(flying) < self.concurrency and (problem := next(waiting, None)) is not None:
                item = _InFlight(problem, self.config)
                flying.append(item)
                advance(item, None)

        fill()
        while flying:
            while judging := [item for item in flying if isinstance(item.need, Verdict)]:
                self._judge(judging, advance, fail)
                fill()
            stepping = [item for item in flying if isinstance(item.need, Step)]
            if stepping:
                self._step(stepping, advance, fail)
            fill()
            if on_round is not None:
                on_round()
            yield from done
            done.clear()

    def _judge(self, items: list[_InFlight], advance, fail) -> None:
        if isinstance(self.judge, LLMJudge):
            self.requests += len(items)
        judgements = self.judge.judge([JudgeItem(i.result.problem.question, i.result.problem.gold, i.need.chain)
                                       for i in items])
        for item, judgement in zip(items, judgements):
            result = item.result
            result.judge_calls += 1
            result.judge_prompt_tokens += judgement.prompt_tokens
            result.judge_tokens += judgement.tokens
            if judgement.verdict is None:
                fail(item, judgement.error or "the judge gave no verdict")
            else:
                advance(item, judgement.verdict)

    def _step(self, items: list[_InFlight], advance, fail) -> None:
        requests = [self.sampling.request(i.result.problem.question, i.need) for i in items]
        responses = self.policy.generate(requests)
        self.requests += len(requests)
        for item, response in zip(items, responses):
            result = item.result
            result.generation_calls += 1
            if not response.ok:
                fail(item, f"policy call failed: {response.error}")
                continue
            if len(response.choices) != item.need.n:
                fail(item, f"policy call returned {len(response.choices)} choices, asked for {item.need.n}")
                continue
            result.sequences += len(response.choices)
            result.prompt_tokens += response.prompt_tokens
            result.generated_tokens += sum(choice.tokens for choice in response.choices)
            advance(item, [choice.text for choice in response.choices])
