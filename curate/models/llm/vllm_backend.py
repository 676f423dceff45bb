"""The `vllm` backend: vLLM's offline engine (`vllm.LLM`) in this process, on the GPU.

An optional extra (`pip install 'curate[vllm]'`), imported only when this backend is built; without
vLLM or without a CUDA GPU it says so and stops. `model` is an HF id or a local model folder, a
`.gguf` file, or `smollm2-135m`; a GGUF file is handed over as the folder the transformers backend
exports it to (vLLM's own GGUF loader needs the original model's tokenizer from the hub).

One `generate` call is one engine call per prompt mode (new turn, or continuing the final
message), so vLLM schedules all its requests together with continuous batching. Each request keeps
its own sampling parameters and seed; stop strings can be kept (`include_stop_str_in_output`);
log-probs are vLLM's, from the raw logits.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Any

from curate.errors import CurateError
from curate.models.llm.base import ChatRequest, ChatResponse, Choice, LLMBackend, TokenLogprob


def vllm_unavailable() -> str | None:
    """Why the vllm backend cannot run here, or None when it can."""
    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed (pip install 'curate[vllm]')"
    import torch

    if not torch.cuda.is_available():
        return "vLLM needs a CUDA GPU and none is visible here (use --backend transformers on a CPU)"
    return None


def engine_model(model: str) -> str:
    """What vLLM loads for `model`: GGUF files (and smollm2-135m) as their exported folder."""
    from curate.models.llm.transformers_backend import exported_folder, resolve

    source, gguf_file = resolve(model)
    return str(exported_folder(source, gguf_file)) if gguf_file else source


class VLLMBackend(LLMBackend):
    name = "vllm"

    def __init__(self, model: str, *, tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.85,
                 max_model_len: int | None = None, dtype: str = "auto", **engine_options: Any):
        reason = vllm_unavailable()
        if reason:
            raise CurateError(f"vllm backend: {reason}")
        self.model = model
        self.engine_options = {"tensor_parallel_size": tensor_parallel_size, "dtype": dtype,
                               "gpu_memory_utilization": gpu_memory_utilization, **engine_options}
        if max_model_len:
            self.engine_options["max_model_len"] = max_model_len
        self._engine = None

    @property
    def engine(self):
        if self._engine is None:
            from vllm import LLM

            self._engine = LLM(model=engine_model(self.model), **self.engine_options)
        return self._engine

    def generate(self, requests: Sequence[ChatRequest]) -> list[ChatResponse]:
        responses: list[ChatResponse | None] = [None] * len(requests)
        for continuing in (False, True):
            indices = [i for i, r in enumerate(requests) if r.continue_final_message == continuing]
            if not indices:
                continue
            try:
                outputs = self.engine.chat([list(requests[i].messages) for i in indices],
                                           [sampling_params(requests[i]) for i in indices], use_tqdm=False,
                                           add_generation_prompt=not continuing, continue_final_message=continuing)
                answers = [to_response(output, requests[i]) for i, output in zip(indices, outputs)]
            except Exception as error:   # an engine failure fails these requests, not the stage
                answers = [ChatResponse(error=f"{type(error).__name__}: {error}") for _ in indices]
            for i, answer in zip(indices, answers):
                responses[i] = answer
        return responses

    def close(self) -> None:
        if self._engine is not None:
            import gc

            import torch

            self._engine = None
            gc.collect()
            torch.cuda.empty_cache()


def sampling_params(request: ChatRequest):
    from vllm import SamplingParams

    return SamplingParams(n=request.n, temperature=request.temperature, top_p=request.top_p,
                          max_tokens=request.max_tokens, stop=list(request.stop) or None,
                          include_stop_str_in_output=request.include_stop, seed=request.seed,
                          logprobs=request.logprobs or None)


def to_response(output, request: ChatRequest) -> ChatResponse:
    choices = []
    for completion in sorted(output.outputs, key=lambda c: c.index):
        logprobs = None
        if request.logprobs:
            logprobs = []
            for token_id, alternatives in zip(completion.token_ids[:request.logprob_tokens],
                                              completion.logprobs or []):
                # vLLM adds the sampled token to the top-k when it ranks lower: keep the top-k only
                ranked = sorted(alternatives.values(), key=lambda lp: lp.rank or 0)[:request.logprobs]
                logprobs.append(TokenLogprob(token=alternatives[token_id].decoded_token,
                                             logprob=float(alternatives[token_id].logprob),
                                             top={lp.decoded_token: float(lp.logprob) for lp in ranked}))
        choices.append(Choice(text=completion.text, finish_reason=completion.finish_reason or "stop",
                              tokens=len(completion.token_ids), logprobs=logprobs))
    return ChatResponse(choices=choices, prompt_tokens=len(output.prompt_token_ids or []))
