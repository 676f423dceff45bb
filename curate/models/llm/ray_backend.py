"""An LLM backend spread over a Ray cluster: one replica of a local backend per Ray actor.

`RayBackend("transformers", "smollm2-135m")` starts `replicas` actors (default: one per GPU, else one
per free CPU), each holding its own `get_backend(inner, model)`; `generate` splits the requests into
contiguous shards, one per replica, and returns the responses in request order. The response cache
stays in the driver (wrap this in `CachedBackend`), and `name` is the inner backend's, so cached
responses are shared with runs of the same backend outside Ray. Recipes use it under `--runner ray`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from curate.models.llm.base import ChatRequest, ChatResponse, LLMBackend


class _Replica:
    def __init__(self, inner: str, model: str, options: dict[str, Any]):
        from curate.models.llm import get_backend

        self.backend = get_backend(inner, model, **options)

    def generate(self, requests: list[ChatRequest]) -> list[ChatResponse]:
        return self.backend.generate(requests)


class RayBackend(LLMBackend):
    def __init__(self, inner: str, model: str, *, replicas: int | None = None, address: str | None = None,
                 **options: Any):
        import ray

        from curate.models.embed_ray import connect

        self.name, self.model = inner, model
        self._started_here = connect(address)
        gpus = int(ray.cluster_resources().get("GPU", 0))
        free_cpus = int(ray.available_resources().get("CPU", 0))    # a task holding a CPU leaves it out
        size = replicas or gpus or max(1, free_cpus)
        actor = ray.remote(num_gpus=1 if gpus else 0, num_cpus=0 if gpus else 1)(_Replica)
        self._replicas = [actor.remote(inner, model, options) for _ in range(size)]

    @property
    def replicas(self) -> int:
        return len(self._replicas)

    def generate(self, requests: Sequence[ChatRequest]) -> list[ChatResponse]:
        import ray

        requests = list(requests)
        if not requests:
            return []
        share = -(-len(requests) // len(self._replicas))
        shards = [requests[start:start + share] for start in range(0, len(requests), share)]
        futures = [replica.generate.remote(shard) for replica, shard in zip(self._replicas, shards)]
        return [response for shard in ray.get(futures) for response in shard]

    def close(self) -> None:
        import ray

        for replica in self._replicas:
            ray.kill(replica)
        self._replicas = []
        if self._started_here:
            ray.shutdown()
