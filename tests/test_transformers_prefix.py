"""The transformers backend's shared-prefix path against its plain path, with the real SmolLM2-135M.

The prefix path prefills a batch's common prefix once (kept for later batches) and each prompt
once whatever its `n`; greedy, it must answer exactly what the plain path answers.
"""

from __future__ import annotations

import pytest

from curate.mcts.prompts import STEP_END, step_messages
from curate.models.llm import ChatRequest, get_backend
from curate.models.llm.transformers_backend import TransformersBackend, common_length, load

QUESTIONS = ["What is 7 times 8?",
             "A farmer has 17 sheep and buys 5 more, then sells half of them. How many sheep are left?",
             "Tom reads 12 pages a day for a week. How many pages does he read?"]


def step_request(question: str, steps: tuple[str, ...] = (), **options) -> ChatRequest:
    messages, continued = step_messages(question, steps)
    return ChatRequest(messages, continue_final_message=continued, include_stop=True,
                       **{"max_tokens": 12, "stop": (STEP_END, "="), **options})


@pytest.fixture(scope="module")
def backends():
    return (get_backend("transformers", "smollm2-135m", batch_size=8),
            get_backend("transformers", "smollm2-135m", batch_size=8, prefix_cache=False))


def same(first, second) -> None:
    assert first.error is None and second.error is None, (first.error, second.error)
    assert first.prompt_tokens == second.prompt_tokens
    assert [(c.text, c.finish_reason, c.tokens) for c in first.choices] == \
        [(c.text, c.finish_reason, c.tokens) for c in second.choices]


def test_common_length():
    assert common_length([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert common_length([[5, 1], [1, 5]]) == 0
    assert common_length([[1, 2, 3]]) == 3


def test_greedy_prefix_path_equals_the_plain_path(backends):
    cached, plain = backends
    # one batch: the few-shot prefix shared, suffixes of different lengths (a continued assistant turn too)
    batch = [step_request(QUESTIONS[0], max_tokens=24), step_request(QUESTIONS[1], max_tokens=24),
             step_request(QUESTIONS[2], ("### Step1: Tom reads 12 pages each day. <end>\n",), max_tokens=24)]
    # another: n = 2 (each prompt prefilled once, its cache copied to both choices), logprobs
    doubled = [step_request(q, n=2, logprobs=3, logprob_tokens=2, max_tokens=8) for q in QUESTIONS[::2]]
    answers, reference = cached.generate(batch + doubled), plain.generate(batch + doubled)
    for first, second in zip(answers, reference):
        same(first, second)
    # an end of turn, a stop string (kept), the token limit
    assert [(a.choices[0].finish_reason, a.text.endswith("=")) for a in answers[:3]] == \
        [("stop", False), ("stop", True), ("length", False)]
    for first, second in zip(answers[3:], reference[3:]):
        assert len(first.choices) == 2 and first.choices[0].text == first.choices[1].text
        for ours, theirs in zip(first.choices[0].logprobs, second.choices[0].logprobs):
            assert ours.token == theirs.token and ours.logprob == pytest.approx(theirs.logprob, abs=1e-3)
            assert ours.top.keys() == theirs.top.keys()
    assert cached.prefill["prefix"] > 500 and cached.prefill["prompt"] < plain.prefill["prompt"] / 3


def test_greedy_stop_string_and_a_single_prompt(backends):
    cached, plain = backends
    stopped = ChatRequest(({"role": "user", "content": "Count from 1 to 20, separated by commas."},),
                          max_tokens=30, stop=(", 5",))
    for request in (stopped, step_request(QUESTIONS[0], max_tokens=20)):
        (first,), (second,) = cached.generate([request]), plain.generate([request])
        same(first, second)
    assert first.choices[0].finish_reason in ("stop", "length")


class RawPrompts(TransformersBackend):
    """The last message's text as the whole prompt: batches with no common prefix at all."""

    def prompt_text(self, request: ChatRequest) -> str:
        return request.messages[-1]["content"]


def test_greedy_without_a_common_prefix():
    cached, plain = RawPrompts("smollm2-135m"), RawPrompts("smollm2-135m", prefix_cache=False)
    batch = [ChatRequest(({"role": "user", "content": text},), max_tokens=10, n=n) for text, n in
             (("The capital of France is", 2), ("Water boils at", 2), ("1, 2, 3, 4,", 1))]
    tokenizer, _ = load("smollm2-135m", cached.device)
    ids = [tokenizer(r.messages[-1]["content"])["input_ids"] for r in batch]
    assert common_length(ids[:2]) == 0
    for first, second in zip(cached.generate(batch), plain.generate(batch)):
        same(first, second)
    assert cached.prefill["prefix"] == len(ids[2]) - 1      # a batch of one: all but its last token


def test_the_kept_prefix_is_reused_not_recomputed():
    backend = get_backend("transformers", "smollm2-135m", prefix_entries=2)
    _, network = load("smollm2-135m", backend.device)
    embedded = []
    hook = network.get_input_embeddings().register_forward_hook(
        lambda module, inputs, output: embedded.append(inputs[0].numel()))
    try:
        backend.generate([step_request(q, max_tokens=2) for q in QUESTIONS[:2]])
        first, computed = sum(embedded), backend.prefill["prefix"]
        embedded.clear()
        backend.generate([step_request(QUESTIONS[2], max_tokens=2), step_request("What is 2 + 2?", max_tokens=2)])
        second = sum(embedded)
    finally:
        hook.remove()
    assert computed > 500                                   # the few-shot prefix, once
    assert backend.prefill["prefix"] == computed            # not again: the same prefix, kept
    assert backend.prefill["reused"] >= computed
    assert second < first - computed + 50                   # the network saw only the suffixes and new tokens
    assert len(backend._prefixes) == 1


def test_sampled_n_is_seeded_and_distinct(backends):
    cached, _ = backends
    request = step_request(QUESTIONS[1], n=3, temperature=1.0, top_p=0.95, seed=7, max_tokens=10)
    (first,), (second,) = cached.generate([request]), cached.generate([request])
    assert [c.text for c in first.choices] == [c.text for c in second.choices]
    assert len({c.text for c in first.choices}) > 1


@pytest.mark.parametrize("candidates", [256, 3])    # the nucleus among the candidates; wider than them
def test_sampler_draws_from_the_temperature_top_p_distribution(candidates):
    import torch

    from curate.models.llm.transformers_backend import _sampler

    logits = torch.tensor([2.0, 1.5, 1.0, 0.6, 0.3, 0.0, -1.0, -3.0])
    temperature, top_p = 0.7, 0.9
    probs = torch.softmax(logits / temperature, -1)         # sorted already: the nucleus is a head of it
    nucleus = (probs.cumsum(-1) - probs) < top_p
    expected = torch.where(nucleus, probs, 0) / probs[nucleus].sum()
    torch.manual_seed(0)
    rows = 40_000
    scores = _sampler(temperature, top_p, candidates)(torch.zeros((rows, 1), dtype=torch.long), logits.repeat(rows, 1))
    drawn = scores.argmax(-1)
    assert bool((scores.isfinite().sum(-1) == 1).all())     # one token left a row, for greedy to take
    frequencies = torch.bincount(drawn, minlength=len(logits)) / rows
    assert int(nucleus.sum()) == 4 and frequencies[~nucleus].sum() == 0    # 4 > 3 candidates: the wide path
    assert torch.allclose(frequencies, expected, atol=0.01), (frequencies, expected)


def test_length_groups_bound_the_padding():
    from curate.models.llm.transformers_backend import length_groups

    lengths = [40, 3, 120, 41, 0, 118, 60, 7, 39, 125]
    groups = length_groups(lengths)
    assert sorted(i for group in groups for i in group) == list(range(len(lengths)))
    for group in groups:
        area = max(lengths[i] for i in group) * len(group)
        assert area - sum(lengths[i] for i in group) <= area / 8 or len(group) == 1
    assert [sorted(lengths[i] for i in group) for group in groups] == [[0], [3], [7], [39, 40, 41], [60], [118, 120, 125]]
    # padded whole, this batch would compute 1,250 token positions for 553 tokens; grouped, 568
    assert sum(max(lengths[i] for i in g) * len(g) for g in groups) == 568
