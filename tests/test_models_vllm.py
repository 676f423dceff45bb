"""The vllm backend: a clear refusal where it cannot run; the real engine where a GPU and vLLM are."""

from __future__ import annotations

import pytest

from curate.errors import CurateError
from curate.models.llm import ChatRequest, get_backend
from curate.models.llm.vllm_backend import vllm_unavailable

QUESTION = ({"role": "user", "content": "What is 2+3? Answer with just the number."},)
UNAVAILABLE = vllm_unavailable()


@pytest.mark.skipif(UNAVAILABLE is None, reason="vLLM and a GPU are present: the backend is built, not refused")
def test_vllm_backend_refuses_clearly_without_vllm_or_gpu():
    with pytest.raises(CurateError, match=r"vllm backend: (vLLM is not installed|vLLM needs a CUDA GPU)"):
        get_backend("vllm", "smollm2-135m")


@pytest.mark.gpu
@pytest.mark.skipif(UNAVAILABLE is not None, reason=f"vllm backend cannot run here: {UNAVAILABLE}")
def test_vllm_backend_on_smollm2(store):
    backend = get_backend("vllm", "smollm2-135m", store=store, gpu_memory_utilization=0.3, max_model_len=2048)
    greedy, stopped, continued, sampled, scored = backend.generate([
        ChatRequest(QUESTION, max_tokens=12),
        ChatRequest(QUESTION, stop=("=",), include_stop=True, max_tokens=40),
        ChatRequest(QUESTION + ({"role": "assistant", "content": "### Step1: add the numbers <end>\n### Step2:"},),
                    continue_final_message=True, stop=("<end>",), include_stop=True, max_tokens=40),
        ChatRequest(QUESTION, n=4, temperature=1.0, top_p=0.95, max_tokens=16, seed=1),
        ChatRequest(QUESTION, logprobs=5, logprob_tokens=2, max_tokens=4),
    ])
    assert all(r.ok for r in (greedy, stopped, continued, sampled, scored))
    assert "5" in greedy.text and greedy.choices[0].finish_reason == "stop"
    assert stopped.text.endswith("=") and stopped.text.count("=") == 1
    assert not continued.text.startswith("<|im_start|>")
    assert len(sampled.choices) == 4 and len({c.text for c in sampled.choices}) > 1
    logprobs = scored.choices[0].logprobs
    assert len(logprobs) == 2 and len(logprobs[0].top) == 5 and logprobs[0].logprob == max(logprobs[0].top.values())
    (again,) = backend.generate([ChatRequest(QUESTION, max_tokens=12)])
    assert again.cached and again.text == greedy.text
    backend.close()
