"""The steps a recipe can run: each is a parameter model plus a function calling the library.

One module per step kind (ingest, embed, label, score, synth, select); importing this package
registers them all in `STEPS`.

A step function gets a `StepContext` (store, recipe, runner) and its validated parameters, does its
work through the same library functions the CLI calls, and returns a `StepResult` (counts in and
out, rejection reasons, the run it recorded). Steps skip work the store already holds: ingest skips
unchanged sources, embed computes only missing vectors, scores are cached, and a select step whose
parameters, pool and signals are unchanged reuses its earlier run, so Prefect needs no cache of its
own that could disagree with the store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict

from curate.store import Store


class StepParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class StepContext:
    store: Store
    recipe: Any                       # curate.config.Recipe
    runner: str = "local"             # local | ray
    ray_address: str | None = None
    flow_run_id: str | None = None
    log: Callable[[str], None] = print


@dataclass
class StepResult:
    counts: dict[str, Any] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)   # why things were rejected or skipped
    run_id: str | None = None
    name: str | None = None
    reused: bool = False


@dataclass(frozen=True)
class Step:
    params: type[StepParams]
    run: Callable[[StepContext, Any], StepResult]
    retries: int = 0                  # Prefect retries: I/O and LLM steps get some


STEPS: dict[str, Step] = {}


def step(kind: str, params: type[StepParams], retries: int = 0):
    def register(function):
        STEPS[kind] = Step(params=params, run=function, retries=retries)
        return function
    return register


def llm_for(ctx: StepContext, backend: str, model: str, base_url: str | None, **options):
    """The step's LLM, behind the store's response cache (so a retried step repeats no call).

    Under the Ray runner a local backend (transformers, vllm) runs as replicas on the cluster; an
    openai backend already scales out behind its server.
    """
    from curate.models.llm import CachedBackend, get_backend

    if ctx.runner == "ray" and backend in ("transformers", "vllm"):
        from curate.models.llm.ray_backend import RayBackend

        return CachedBackend(RayBackend(backend, model, address=ctx.ray_address, **options), ctx.store)
    return get_backend(backend, model, store=ctx.store, **({"base_url": base_url} if base_url else {}), **options)
