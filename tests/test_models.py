"""The model layer with real models: the packaged MiniLM embedder and SmolLM2-135M (GGUF)."""

from __future__ import annotations

import numpy as np
import pytest

from curate.errors import CurateError
from curate.ingest import ingest
from curate.models.embed import conversation_view, embed_samples, encode_texts, load_embeddings, prompt_view
from curate.models.llm import CachedBackend, ChatRequest, ChatResponse, LLMBackend, get_backend
from curate.models.llm.base import truncate_at_stop
from curate.selectors import Pool
from tests.conftest import count, write_jsonl

MULTI_TURN = [{"role": "system", "content": " Be brief. "}, {"role": "user", "content": "Q1\n"},
              {"role": "assistant", "content": "A1"}, {"role": "user", "content": "Q2"},
              {"role": "assistant", "content": "A2"}]


def test_views_follow_kmq_concatenation():
    # selection/encoder/utils.py: concat_tulu_messages_only_user strips "\n" after every message
    assert prompt_view(MULTI_TURN) == "<|system|>\nBe brief.<|user|>\nQ1<|user|>\nQ2"
    assert conversation_view(MULTI_TURN) == ("<|system|>\nBe brief.\n<|user|>\nQ1\n<|assistant|>\nA1</s>\n"
                                             "<|user|>\nQ2\n<|assistant|>\nA2</s>\n")


def test_embed_is_cached_normalised_and_loads_in_pool_order(store, tmp_path):
    records = [{"prompt": f"What is {i} plus {i}?", "completion": str(2 * i)} for i in range(30)]
    records.append({"prompt": "word " * 400, "completion": "long"})
    ingest(store, [str(write_jsonl(tmp_path / "a.jsonl", records))])
    first = embed_samples(store, progress=False)
    assert (first.computed, first.truncated) == (31, 1)
    assert embed_samples(store, progress=False).computed == 0
    assert count(store, "SELECT count(*) FROM embeddings") == 31

    pool = Pool.from_store(store)
    matrix = pool.embeddings()
    assert matrix.shape == (31, 384) and matrix.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)
    reversed_ids = pool.ids[::-1]
    np.testing.assert_array_equal(load_embeddings(store, reversed_ids), matrix[::-1])
    # the stored vector is the encoder's vector of the prompt view
    with store.connect() as con:
        messages = con.execute("SELECT messages FROM samples WHERE sample_id = ?", [pool.ids[0]]).fetchone()[0]
    np.testing.assert_allclose(matrix[0], encode_texts([prompt_view(messages)])[0], atol=1e-5)
    with pytest.raises(CurateError, match="curate embed"):
        load_embeddings(store, pool.ids, view="response")


def test_embed_cli(cli, store, tmp_path):
    ingest(store, [str(write_jsonl(tmp_path / "a.jsonl", [{"prompt": "p", "completion": "c"}]))])
    assert "embedded 1 samples" in cli("embed", "--view", "conversation").stdout
    assert "embedded 0 samples (1 already had one)" in cli("embed", "--view", "conversation").stdout


def test_truncate_at_stop():
    assert truncate_at_stop("a<end>b<x>", ["<x>", "<end>"], False) == ("a", True)
    assert truncate_at_stop("a<end>b", ["<end>"], True) == ("a<end>", True)
    assert truncate_at_stop("abc", ["<end>"], False) == ("abc", False)


def test_request_validation():
    with pytest.raises(ValueError, match="continue_final_message"):
        ChatRequest(messages=({"role": "user", "content": "x"},), continue_final_message=True)


@pytest.fixture(scope="module")
def smollm():
    return get_backend("transformers", "smollm2-135m")


QUESTION = ({"role": "user", "content": "What is 2+3? Answer with just the number."},)


def test_batches_hold_requests_that_share_sampling():
    from curate.models.llm.transformers_backend import _sampling_key

    greedy = [ChatRequest(QUESTION, seed=1), ChatRequest(QUESTION, seed=None, top_p=0.5)]
    sampled = [ChatRequest(QUESTION, temperature=1.0, seed=1), ChatRequest(QUESTION, temperature=1.0, seed=None)]
    stopped = ChatRequest(QUESTION, stop=("=",))
    assert len({_sampling_key(r) for r in greedy}) == 1                 # seed and top_p do not matter greedily
    assert len({_sampling_key(r) for r in [*sampled, stopped, greedy[0]]}) == 4
    assert sorted(map(_sampling_key, [*greedy, *sampled, stopped]))     # None seeds sort with numbers


def test_transformers_greedy_is_deterministic_and_batched(smollm):
    a, b, c, stopped = smollm.generate([ChatRequest(QUESTION, max_tokens=12)] * 2 +
                                       [ChatRequest(({"role": "user", "content": "Name a colour."},), max_tokens=12),
                                        ChatRequest(QUESTION, max_tokens=12, stop=("=",))])
    assert a.ok and a.text == b.text and a.text != c.text
    assert "5" in a.text and a.choices[0].finish_reason == "stop" and a.prompt_tokens > 10
    # another request's stop string does not cut this one (they are generated in separate batches)
    assert "=" in a.text and stopped.text == a.text[:a.text.index("=")]


def test_chat_template_is_the_models(smollm):
    from curate.models.llm.transformers_backend import load

    prompt = smollm.prompt_text(ChatRequest(QUESTION))
    assert prompt == ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                      "<|im_end|>\n<|im_start|>user\n" + QUESTION[0]["content"] + "<|im_end|>\n<|im_start|>assistant\n")
    partial = smollm.prompt_text(ChatRequest(QUESTION + ({"role": "assistant", "content": "The sum is"},),
                                             continue_final_message=True))
    assert partial.endswith("<|im_start|>assistant\nThe sum is")
    tokenizer, _ = load("smollm2-135m", smollm.device)
    assert tokenizer.eos_token == "<|im_end|>"          # a turn ends at <|im_end|>, so finish_reason is stop


def test_transformers_sampling_n_stop_continue_and_logprobs(smollm):
    sampled, stopped, continued, scored = smollm.generate([
        ChatRequest(QUESTION, n=3, temperature=1.0, top_p=0.95, max_tokens=16, seed=3),
        ChatRequest(QUESTION, stop=("=",), include_stop=True, max_tokens=40),
        ChatRequest(QUESTION + ({"role": "assistant", "content": "### Step1: add the numbers <end>\n### Step2:"},),
                    continue_final_message=True, stop=("<end>",), include_stop=True, max_tokens=40),
        ChatRequest(QUESTION, logprobs=5, logprob_tokens=2, max_tokens=4),
    ])
    assert len(sampled.choices) == 3 and len({c.text for c in sampled.choices}) > 1
    assert stopped.text.endswith("=") and stopped.text.count("=") == 1 and "5" not in stopped.text
    assert stopped.choices[0].finish_reason == "stop"
    assert not continued.text.startswith("<|im_start|>") and "assistant" not in continued.text[:12]
    logprobs = scored.choices[0].logprobs
    assert len(logprobs) == 2 and len(logprobs[0].top) == 5
    assert logprobs[0].logprob == max(logprobs[0].top.values())         # greedy picks the top token
    assert all(v <= 0 for v in logprobs[0].top.values())
    assert 0.99 > sum(np.exp(v) for v in logprobs[0].top.values()) > 0.01


class FlakyBackend(LLMBackend):
    """A scripted stand-in that fails the first time each prompt is asked (pins the cache's logic)."""

    name, model = "flaky", "none"

    def __init__(self):
        self.asked = []

    def generate(self, requests):
        answers = []
        for request in requests:
            prompt = request.messages[-1]["content"]
            first_time = prompt not in self.asked
            self.asked.append(prompt)
            answers.append(ChatResponse(error="timeout") if first_time and prompt.startswith("flaky")
                           else ChatResponse.from_dict({"choices": [{"text": prompt.upper(), "finish_reason": "stop"}]}))
        return answers


def test_cache_resumes_without_repeating_and_retries_failures(store):
    cached = CachedBackend(FlakyBackend(), store)
    requests = [ChatRequest(({"role": "user", "content": p},)) for p in ["a", "flaky b", "a"]]
    first = cached.generate(requests)
    assert [r.ok for r in first] == [True, False, True] and first[1].error == "timeout"
    assert cached.calls == 2                                 # "a" asked once
    with store.connect() as con:
        assert con.execute("SELECT count(*) FROM llm_cache WHERE error = 'timeout'").fetchone()[0] == 1
    again = CachedBackend(cached.backend, store)            # a new process after a crash
    second = again.generate(requests)
    assert [r.text for r in second] == ["A", "FLAKY B", "A"]
    assert again.calls == 1 and again.hits == 2 and second[0].cached
    with store.connect() as con:
        assert con.execute("SELECT count(*), count(error) FROM llm_cache").fetchone() == (2, 0)


def test_real_backend_through_cache(store, smollm):
    cached = CachedBackend(smollm, store)
    request = ChatRequest(QUESTION, max_tokens=8)
    (first,) = cached.generate([request])
    (second,) = CachedBackend(smollm, store).generate([request])
    assert second.cached and second.text == first.text


def test_unknown_backend_and_model(store):
    with pytest.raises(CurateError, match="unknown LLM backend"):
        get_backend("nope", "x")
    (response,) = get_backend("transformers", "/no/such/model.gguf").generate([ChatRequest(QUESTION)])
    assert not response.ok and "no such GGUF file" in response.error


def test_gguf_export_folder_is_keyed_by_content_not_path(tmp_path):
    """Copies of one GGUF file (one per virtual environment) share an export; a changed byte does not."""
    from curate.models.llm.transformers_backend import export_name

    first, second, changed = (tmp_path / d / "model.gguf" for d in ("venv-a", "venv-b", "venv-c"))
    body = bytes(range(256)) * 5_000
    for path, data in ((first, body), (second, body), (changed, body[:-1] + b"x")):
        path.parent.mkdir()
        path.write_bytes(data)
    assert export_name(first, "5.0") == export_name(second, "5.0")
    assert export_name(first, "5.0").startswith("model-")
    assert export_name(changed, "5.0") != export_name(first, "5.0")
    assert export_name(first, "5.1") != export_name(first, "5.0")      # a new converter re-exports


@pytest.mark.slow
def test_gguf_export_is_the_gguf_model(tmp_path, monkeypatch):
    """The folder a GGUF file is exported to (once, then reused) is the model loading the file gives."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from curate.models.llm.transformers_backend import exported_folder, resolve

    monkeypatch.setenv("CURATE_CACHE_DIR", str(tmp_path))
    folder, name = resolve("smollm2-135m")
    exported = exported_folder(folder, name)
    assert exported.parent == tmp_path / "gguf" and exported_folder(folder, name) == exported   # made once
    assert not [p for p in exported.parent.iterdir() if ".partial-" in p.name]
    text = "<|im_start|>user\nWhat is 2+3? ünïcødé 你好<|im_end|>\n<|im_start|>assistant\n"
    ids = AutoTokenizer.from_pretrained(folder, gguf_file=name)(text, return_tensors="pt").input_ids
    assert torch.equal(AutoTokenizer.from_pretrained(exported)(text, return_tensors="pt").input_ids, ids)
    direct = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    reloaded = AutoModelForCausalLM.from_pretrained(exported, dtype=torch.float32)
    with torch.inference_mode():
        assert torch.equal(direct(ids).logits, reloaded(ids).logits)
