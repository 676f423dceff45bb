"""Recipe step `score`: quality (deita, rubric, pairwise), MCTS difficulty, or imported scores."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import Field

from curate.errors import CurateError
from curate.flows.steps.base import StepContext, StepParams, StepResult, llm_for, step


class ScoreParams(StepParams):
    method: str = Field(description="deita, rubric or pairwise (quality), difficulty (MCTS), import")
    backend: str = "transformers"
    model: str = "smollm2-135m"
    base_url: str | None = None
    where: str | None = None
    limit: int | None = Field(None, ge=1, description="score at most this many samples")
    params: dict[str, Any] = Field(default_factory=dict, description="the method's options, as its CLI command's")


SCORERS: dict[str, Callable[[StepContext, ScoreParams], StepResult]] = {}


def scorer(*methods: str):
    def register(function):
        for method in methods:
            SCORERS[method] = function
        return function
    return register


@step("score", ScoreParams, retries=1)
def score_step(ctx: StepContext, params: ScoreParams) -> StepResult:
    if params.method not in SCORERS:
        raise CurateError(f"score step: unknown method {params.method!r}; valid: {', '.join(sorted(SCORERS))}")
    return SCORERS[params.method](ctx, params)


def _check_options(what: str, function, options: dict[str, Any], *, also: tuple[str, ...] = ()) -> None:
    """Refuse an unknown or misspelt option, or one the step sets itself, before any model loads."""
    import inspect

    set_by_step = {"where", "limit", "progress", "flow_run_id", "run_id"}
    valid = [name for name, p in inspect.signature(function).parameters.items()
             if p.kind is p.KEYWORD_ONLY and name not in set_by_step] + list(also)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        hint = " (where and limit go beside params:, not in it)" if set(unknown) & {"where", "limit"} else ""
        raise CurateError(f"{what}: unknown option {', '.join(unknown)}{hint}; valid: {', '.join(valid)}")


@scorer("deita", "rubric", "pairwise")
def quality_scorer(ctx: StepContext, params: ScoreParams) -> StepResult:
    from curate.scoring.quality.run import score_quality

    _check_options(f"score {params.method}", score_quality, params.params)
    llm = llm_for(ctx, params.backend, params.model, params.base_url)
    try:
        report = score_quality(ctx.store, llm, params.method, where=params.where, limit=params.limit,
                               flow_run_id=ctx.flow_run_id, **params.params)
    finally:
        llm.close()
    return StepResult(counts={**report.counts, "already": report.already}, run_id=report.run_id,
                      reused=report.run_id is None)


@scorer("difficulty")
def difficulty_scorer(ctx: StepContext, params: ScoreParams) -> StepResult:
    """MCTS difficulty; params as `curate score difficulty`'s options (judge, max_iterations, ...)."""
    from dataclasses import fields

    from curate.mcts import LLMJudge, RuleJudge, Sampling, SearchConfig
    from curate.scoring.difficulty import score_difficulty

    options = dict(params.params)
    judge_kind = options.pop("judge", "rule")
    if judge_kind not in ("rule", "llm"):
        raise CurateError(f"score difficulty: judge {judge_kind!r}; valid: rule, llm")
    judge_options = {key[len("judge_"):]: options.pop(key) for key in list(options) if key.startswith("judge_")}
    search = {f.name: options.pop(f.name) for f in fields(SearchConfig) if f.name in options}
    sampling = {f.name: options.pop(f.name) for f in fields(Sampling) if f.name in options}
    _check_options("score difficulty", score_difficulty, options)
    # the judge shares the policy model here; a separate judge model is a CLI option (--judge-model)
    _check_options("score difficulty judge_*", LLMJudge, judge_options)
    concurrency = options.get("concurrency", 32)
    extra = {"batch_size": concurrency} if params.backend == "transformers" else {}
    policy = llm_for(ctx, params.backend, params.model, params.base_url, **extra)
    judge = RuleJudge() if judge_kind == "rule" else LLMJudge(policy, **judge_options)
    try:
        report = score_difficulty(ctx.store, policy, judge, SearchConfig(**search), Sampling(**sampling),
                                  where=params.where, limit=params.limit, progress=False, **options)
    finally:
        policy.close()
    return StepResult(counts={"searched": report.searched, "already": report.already, "solved": report.solved,
                              "unsolved": report.unsolved, "failed": report.failed, "requests": report.requests,
                              "calls": report.calls}, run_id=report.run_id, reused=not report.searched)


@scorer("import")
def import_scorer(ctx: StepContext, params: ScoreParams) -> StepResult:
    from curate.scoring.external import import_scores
    from curate.store.runs import start_run

    options = dict(params.params)
    if "path" not in options or "scorer" not in options:
        raise CurateError("score import: params needs path and scorer")
    _check_options("score import", import_scores, options, also=("path", "scorer"))
    options["path"] = str(ctx.recipe.resolve(options["path"]))
    with start_run(ctx.store, "score:import", options, flow_run_id=ctx.flow_run_id) as run:
        report = import_scores(ctx.store, options.pop("path"), options.pop("scorer"), run_id=run.run_id, **options)
        run.counts.update({"written": report.written, "unmatched": report.unmatched, "errors": len(report.errors)})
    if report.errors:
        raise CurateError(f"score import: {len(report.errors)} bad rows, first: {report.errors[0]}")
    return StepResult(counts=dict(run.counts), run_id=run.run_id)
