"""Recipe step `synth` (RV-Syn): optionally grow the library from seeds, then generate."""

from __future__ import annotations

from pydantic import Field

from curate.flows.steps.base import StepContext, StepParams, StepResult, llm_for, step


class SynthParams(StepParams):
    n: int = Field(ge=1, description="verified problems to keep")
    k: str = "2..4"
    strategy: str = "cooccurrence"
    no_llm: bool = False
    backend: str = "transformers"
    model: str = "smollm2-135m"
    base_url: str | None = None
    compose: str | None = None
    seed: int = 0
    verify_samples: int = 4
    origin: str = "all"
    max_attempts: int | None = None
    max_tokens: int = 512
    timeout: float = 5.0
    source: str = "rvsyn"
    starter: bool = Field(True, description="install the built-in starter library first (idempotent)")
    seeds_from: str | None = Field(None, description="first grow the library from this source's seed problems "
                                                     "(gsm8k or math dialect) with the LLM, even with no_llm")
    seed_limit: int | None = Field(None, ge=1, description="use the first N seeds")


@step("synth", SynthParams, retries=1)
def synth_step(ctx: StepContext, params: SynthParams) -> StepResult:
    from curate.synth.generate import Synthesiser
    from curate.synth.library import install_starter
    from curate.synth.merge import merge_identical
    from curate.synth.sampling import parse_k

    if params.starter:
        install_starter(ctx.store)
        merge_identical(ctx.store)
    # no_llm is about generation; growing the library from seeds always takes the LLM.
    wants_llm = params.seeds_from or not params.no_llm
    llm = llm_for(ctx, params.backend, params.model, params.base_url) if wants_llm else None
    backend = None if params.no_llm else llm
    try:
        counts = {}
        if params.seeds_from:
            from curate.synth.extract import LibraryBuilder

            built = LibraryBuilder(llm, limit=params.seed_limit, max_tokens=max(params.max_tokens, 768),
                                   timeout=params.timeout, seed=params.seed).run(ctx.store, params.seeds_from)
            counts = {"seeds": built.seeds, "seeds_kept": built.kept, "functions_added": built.functions_added}
        report = Synthesiser(params.n, k=parse_k(params.k), strategy=params.strategy, backend=backend,
                             seed=params.seed, verify_samples=params.verify_samples, origin=params.origin,
                             max_attempts=params.max_attempts, max_tokens=params.max_tokens,
                             timeout=params.timeout, source=params.source,
                             compose=params.compose).run(ctx.store, log=ctx.log)
    finally:
        if llm is not None:
            llm.close()
    return StepResult(counts={**counts, "attempts": report.attempts, "kept": report.kept},
                      reasons=dict(report.rejected), run_id=report.run_id)
