"""Recipe step `embed`: missing embeddings only (on Ray replicas under the Ray runner)."""

from __future__ import annotations

from curate.flows.steps.base import StepContext, StepParams, StepResult, step


class EmbedParams(StepParams):
    model: str | None = None
    view: str = "prompt"
    where: str | None = None
    batch_size: int = 64


@step("embed", EmbedParams)
def embed_step(ctx: StepContext, params: EmbedParams) -> StepResult:
    from curate.models.embed import embed_samples

    # Under the Ray runner the encoding goes to the cluster's model replicas (the same rows either way).
    report = embed_samples(ctx.store, params.model, params.view, where=params.where, batch_size=params.batch_size,
                           progress=False, ray=ctx.runner == "ray", ray_address=ctx.ray_address)
    return StepResult(counts={"embedded": report.computed, "already": report.already, "truncated": report.truncated})
