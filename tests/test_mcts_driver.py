"""The concurrent driver with scripted backends (test doubles): batching, requests, judges, failures."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from curate.mcts import LLMJudge, Problem, RuleJudge, Sampling, SearchConfig, SearchDriver
from curate.mcts.prompts import JUDGE_PROMPT, JUDGE_SYSTEM, STEP_PROMPT, judge_says_true
from curate.models.llm import ChatRequest, ChatResponse, Choice, LLMBackend


class ScriptedPolicy(LLMBackend):
    """Answers a step request with texts that depend only on the request (question, steps, seed).

    A question "Problem k ..." has gold answer k; the policy finishes a chain with a right answer
    with a probability falling with k, so problems range from easy to unsolved. Problems listed in
    `broken` get an error instead of an answer.
    """

    name = "scripted"

    def __init__(self, model: str = "scripted-policy", broken: Sequence[int] = ()):
        self.model = model
        self.broken = set(broken)
        self.batches: list[int] = []
        self.requests: list[ChatRequest] = []

    def generate(self, requests):
        self.batches.append(len(requests))
        self.requests.extend(requests)
        return [self.answer(r) for r in requests]

    def answer(self, request: ChatRequest) -> ChatResponse:
        question = request.messages[0]["content"].removeprefix(STEP_PROMPT)
        k = int(question.split()[1].rstrip(":"))
        if k in self.broken:
            return ChatResponse(error="HTTP 500: scripted failure")
        done = request.messages[1]["content"] if request.continue_final_message else ""
        choices = []
        for index in range(request.n):
            rng = random.Random(f"{request.seed}:{index}:{question}:{done}")
            if rng.random() < 0.3:
                answer = k if rng.random() < 1.0 / (1 + k) else k + 1
                text = f"\n### Final Answer: The answer is: $\\boxed{{{answer}}}$. <end>"
            else:
                text = f"\n### Step: think {rng.randrange(1000)} <end>"
            choices.append(Choice(text=text, finish_reason="stop", tokens=len(text.split())))
        return ChatResponse(choices=choices, prompt_tokens=len(request.messages[-1]["content"].split()))


class ScriptedJudge(LLMBackend):
    """A judge model that says true exactly when the chain's box holds the gold answer."""

    name = "scripted"
    model = "scripted-judge"

    def __init__(self):
        self.requests: list[ChatRequest] = []

    def generate(self, requests):
        self.requests.extend(requests)
        replies = []
        for request in requests:
            prompt = request.messages[-1]["content"]
            gold = prompt.split("Ground truth answer: ")[1].split("\n")[0]
            chain = prompt.split("Generated rationale and answer: ")[1]
            verdict = "true" if f"boxed{{{gold}}}" in chain else "false"
            replies.append(ChatResponse(choices=[Choice(f"The generated answer is {verdict}. Because.", "stop", 7)],
                                        prompt_tokens=len(prompt.split())))
        return replies


def problems(n: int, start: int = 1) -> list[Problem]:
    return [Problem(f"id{k:03d}", f"Problem {k}: how much is {k}?", str(k)) for k in range(start, start + n)]


def summary(results):
    return {r.problem.sample_id: (r.error, r.outcome.solved if r.outcome else None,
                                  r.outcome.iteration if r.outcome else None,
                                  r.outcome.chain if r.outcome else None, r.generation_calls, r.judge_calls,
                                  r.sequences, r.generated_tokens) for r in results}


CONFIG = SearchConfig(max_iterations=8)


def test_concurrent_search_batches_requests_and_matches_one_at_a_time():
    sequential_policy, concurrent_policy = ScriptedPolicy(), ScriptedPolicy()
    sequential = list(SearchDriver(sequential_policy, RuleJudge(), CONFIG, concurrency=1).run(problems(12)))
    concurrent = list(SearchDriver(concurrent_policy, RuleJudge(), CONFIG, concurrency=5).run(problems(12)))
    assert summary(sequential) == summary(concurrent)          # the same searches, only batched
    outcomes = [r.outcome for r in concurrent]
    assert any(o.solved and o.iteration == 0 for o in outcomes) and any(not o.solved for o in outcomes)
    assert any(o.solved and o.iteration > 0 for o in outcomes)
    assert max(sequential_policy.batches) == 1
    assert concurrent_policy.batches[0] == 5 and max(concurrent_policy.batches) == 5
    assert len(concurrent_policy.batches) < len(sequential_policy.batches) / 2
    assert sorted(map(repr, concurrent_policy.requests)) == sorted(map(repr, sequential_policy.requests))
    # a finished problem's place goes to the next one at once: batches stay full (5) while problems
    # wait, then shrink as the last ones finish
    batches = concurrent_policy.batches
    assert batches == sorted(batches, reverse=True) and batches.count(5) > len(batches) / 2


def test_step_requests_are_the_references_generation():
    policy = ScriptedPolicy()
    sampling = Sampling(temperature=0.5, top_p=0.9, max_new_tokens=2048)
    [result] = SearchDriver(policy, RuleJudge(), SearchConfig(max_iterations=2), sampling).run(problems(1, start=40))
    root, second = policy.requests[:2]
    question = "Problem 40: how much is 40?"
    assert root.messages == ({"role": "user", "content": STEP_PROMPT + question},)
    assert not root.continue_final_message and root.n == 3
    assert second.continue_final_message and second.n == 1
    assert second.messages[1]["role"] == "assistant" and second.messages[1]["content"].endswith("<end>")
    for request in policy.requests:
        assert (request.temperature, request.top_p, request.max_tokens) == (0.5, 0.9, 2048)
        assert request.stop == ("<end>",) and request.include_stop
    assert len({r.cache_key("scripted", "m") for r in policy.requests}) == len(policy.requests)
    assert result.generation_calls == len(policy.requests)


def test_step_prompt_has_no_control_characters_and_the_boxed_format():
    assert not any(ord(c) < 32 and c != "\n" for c in STEP_PROMPT)
    assert "within $\\boxed{}$." in STEP_PROMPT and "$\\boxed{217}$." in STEP_PROMPT
    assert STEP_PROMPT.endswith("Here is your question:\n")
    assert JUDGE_PROMPT.splitlines()[0].endswith("rationale. ")


def test_llm_judge_sees_the_reference_prompt_and_judges_each_chain_once():
    policy, judge_model = ScriptedPolicy(), ScriptedJudge()
    judge = LLMJudge(judge_model, max_tokens=512)
    llm = summary(SearchDriver(policy, judge, CONFIG, concurrency=4).run(problems(10)))
    rule = summary(SearchDriver(ScriptedPolicy(), RuleJudge(), CONFIG, concurrency=4).run(problems(10)))
    assert {k: v[:4] for k, v in llm.items()} == {k: v[:4] for k, v in rule.items()}   # same verdicts here
    first = judge_model.requests[0]
    assert first.messages[0] == {"role": "system", "content": JUDGE_SYSTEM}
    assert first.messages[1]["content"].startswith(
        "Please help me judge the correctness of the generated answer and the corresponding rationale. \n"
        "Question: Problem ")
    assert (first.temperature, first.top_p, first.max_tokens) == (0.7, 0.8, 512)
    prompts = [r.messages[1]["content"] for r in judge_model.requests]
    assert len(prompts) == len(set(prompts)) == sum(v[5] for v in llm.values())


def test_verdict_rule_is_true_in_the_first_sentence():
    assert judge_says_true("The generated answer is true.")
    assert judge_says_true("true")
    assert not judge_says_true("The generated answer is false. It is not true.")
    assert not judge_says_true("The generated answer is True.")      # case-sensitive, as the reference


def test_a_failed_call_fails_that_problem_only():
    results = summary(SearchDriver(ScriptedPolicy(broken=[3]), RuleJudge(), CONFIG, concurrency=4)
                      .run(problems(5)))
    assert results["id003"][0] == "policy call failed: HTTP 500: scripted failure"
    assert results["id003"][1] is None
    assert all(results[k][0] is None for k in ("id001", "id002", "id004", "id005"))


def test_concurrency_must_be_positive():
    with pytest.raises(ValueError):
        SearchDriver(ScriptedPolicy(), RuleJudge(), concurrency=0)
