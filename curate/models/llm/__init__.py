"""LLM backends behind one chat interface (see base.py), chosen by name.

    backend = get_backend("transformers", "smollm2-135m", store=store)     # cached in the store
    [response] = backend.generate([ChatRequest(messages=({"role": "user", "content": "Hi"},))])

Backends: `transformers` (local, CPU or GPU, GGUF files too), `openai` (any OpenAI-compatible server),
`vllm` (the offline engine; optional extra `curate[vllm]`, needs a GPU).
"""

from __future__ import annotations

from typing import Any

from curate.errors import CurateError
from curate.models.llm.base import ChatRequest, ChatResponse, Choice, LLMBackend, TokenLogprob
from curate.models.llm.cache import CachedBackend
from curate.store import Store

__all__ = ["BACKENDS", "CachedBackend", "ChatRequest", "ChatResponse", "Choice", "LLMBackend", "TokenLogprob",
           "get_backend"]


def _transformers(model: str, **options: Any) -> LLMBackend:
    from curate.models.llm.transformers_backend import TransformersBackend

    return TransformersBackend(model, **options)


def _openai(model: str, **options: Any) -> LLMBackend:
    from curate.models.llm.openai_backend import OpenAIBackend

    return OpenAIBackend(model, **options)


def _vllm(model: str, **options: Any) -> LLMBackend:
    from curate.models.llm.vllm_backend import VLLMBackend

    return VLLMBackend(model, **options)


BACKENDS = {"transformers": _transformers, "openai": _openai, "vllm": _vllm}


def get_backend(name: str, model: str, *, store: Store | None = None, **options: Any) -> LLMBackend:
    """The backend `name` serving `model`; wrapped in the store's response cache when a store is given."""
    if name not in BACKENDS:
        raise CurateError(f"unknown LLM backend {name!r}; choose from {', '.join(BACKENDS)}")
    try:
        backend = BACKENDS[name](model, **options)
    except TypeError as error:       # an option this backend does not take
        if "unexpected keyword argument" not in str(error):
            raise
        raise CurateError(f"{name} backend: {error}") from error
    return CachedBackend(backend, store) if store is not None else backend
