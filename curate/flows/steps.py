"""The steps a recipe can run: each is a parameter model plus a function calling the library.

A step function gets a `StepContext` (store, recipe, runner) and its validated parameters, does its
work through the same library functions the CLI calls, and returns a `StepResult` (counts in and
out, rejection reasons, the run it recorded). Steps skip work the store already holds: ingest skips
unchanged sources, embed computes only missing vectors, scores are cached, and a select step whose
parameters, pool and signals are unchanged reuses its earlier run, so Prefect needs no cache of its
own that could disagree with the store.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from curate.errors import CurateError
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


# -- ingest ----------------------------------------------------------------------------------------


class IngestParams(StepParams):
    sources: list[str] | None = Field(None, description="names of the recipe's sources (default: all)")
    strict: bool = Field(False, description="fail the step if any row is quarantined")


@step("ingest", IngestParams, retries=2)
def ingest_step(ctx: StepContext, params: IngestParams) -> StepResult:
    from curate.ingest import ingest

    wanted = params.sources or [s.name for s in ctx.recipe.sources]
    unknown = set(wanted) - {s.name for s in ctx.recipe.sources}
    if unknown:
        raise CurateError(f"ingest step names unknown sources: {', '.join(sorted(unknown))}")
    result = StepResult()
    totals: Counter = Counter()
    for source in ctx.recipe.sources:
        if source.name not in wanted:
            continue
        reports = ingest(ctx.store, [ctx.recipe.resolve(source.path)], dialect=source.dialect, source=source.name,
                         mapping=source.fields or None, license=source.license, log=ctx.log)
        failed = [r for r in reports if r.status == "error"]
        if failed and source.optional:
            ctx.log(f"warning: optional source {source.name} skipped: {failed[0].error}")
            totals["sources_skipped"] += 1
            result.reasons[f"skipped {source.name}: unreachable"] = 1
            continue
        if failed:
            raise CurateError(f"source {source.name}: {failed[0].error}")
        for report in reports:
            totals["rows_read"] += report.counts.read
            totals["new"] += report.counts.new
            totals["duplicate"] += report.counts.duplicate
            totals["quarantined"] += report.counts.quarantined
            for reason, n in report.counts.reasons.items():
                result.reasons[reason] = result.reasons.get(reason, 0) + n
        totals["sources_ingested"] += 1
    if params.strict and totals["quarantined"]:
        raise CurateError(f"strict ingest: {totals['quarantined']} rows quarantined")
    result.counts = dict(totals)
    return result


# -- embed -----------------------------------------------------------------------------------------


class EmbedParams(StepParams):
    model: str | None = None
    view: str = "prompt"
    where: str | None = None
    batch_size: int = 64


@step("embed", EmbedParams)
def embed_step(ctx: StepContext, params: EmbedParams) -> StepResult:
    from curate.models.embed import embed_samples

    report = embed_samples(ctx.store, params.model, params.view, where=params.where, batch_size=params.batch_size,
                           progress=False)
    return StepResult(counts={"embedded": report.computed, "already": report.already, "truncated": report.truncated})


# -- select ----------------------------------------------------------------------------------------


class SelectParams(StepParams):
    name: str = Field(description="name of this selection in the recipe (output.emit refers to it)")
    selector: str = Field(description="a registered selector: random, mig, kmeans, quality, deita, ...")
    budget: int | None = Field(None, ge=1)
    where: str | None = None
    params: dict[str, Any] = Field(default_factory=dict, description="the selector's parameters")
    reuse: bool = Field(True, description="reuse an earlier run with the same parameters, pool and signals")


def _signals_fingerprint(store: Store, pool_ids) -> str:
    """Changes whenever the pool or any stored signal changes (new scores, labels, embeddings)."""
    digest = hashlib.sha256("\n".join(pool_ids).encode())
    with store.connect() as con:
        for table in ("labels", "scores", "embeddings"):
            exists = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?",
                                 [table]).fetchone()[0]
            if exists:
                digest.update(orjson.dumps(con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]))
        for (stamp,) in con.execute("SELECT max(created_at) FROM scores UNION ALL "
                                    "SELECT max(created_at) FROM embeddings").fetchall():
            digest.update(str(stamp).encode())
    return digest.hexdigest()[:16]


@step("select", SelectParams)
def select_step(ctx: StepContext, params: SelectParams) -> StepResult:
    from curate.selectors import Pool, get_selector, run_selection
    from curate.store.runs import params_hash

    selector_class = get_selector(params.selector)
    try:
        selector = selector_class(**params.params)
    except TypeError as error:
        raise CurateError(f"select step {params.name!r}: {error}") from None
    pool = Pool.from_store(ctx.store, params.where)
    fingerprint = _signals_fingerprint(ctx.store, pool.ids.tolist())
    extra = {"recipe_step": params.name, "inputs": fingerprint}
    full = {"selector": selector.name, **selector.get_params(), "budget": params.budget, "where": pool.where, **extra}
    if params.reuse:
        with ctx.store.connect() as con:
            row = con.execute("SELECT run_id, counts FROM runs WHERE params_hash = ? AND status = 'completed' "
                              "ORDER BY started_at DESC LIMIT 1", [params_hash(full)]).fetchone()
        if row:
            ctx.log(f"select {params.name}: inputs and parameters unchanged, reusing run {row[0]}")
            return StepResult(counts=orjson.loads(row[1]) if row[1] else {}, run_id=row[0], name=params.name,
                              reused=True)
    run_id = run_selection(ctx.store, selector, pool, params.budget, recipe=ctx.recipe.name, extra_params=extra,
                           flow_run_id=ctx.flow_run_id)
    with ctx.store.connect() as con:
        counts = orjson.loads(con.execute("SELECT counts FROM runs WHERE run_id = ?", [run_id]).fetchone()[0])
        reasons = dict(con.execute("SELECT reason, count(*) FROM selections WHERE run_id = ? AND NOT selected "
                                   "GROUP BY 1", [run_id]).fetchall())
    return StepResult(counts=counts, reasons=reasons, run_id=run_id, name=params.name)


# -- synth (RV-Syn) --------------------------------------------------------------------------------


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


@step("synth", SynthParams, retries=1)
def synth_step(ctx: StepContext, params: SynthParams) -> StepResult:
    from curate.models.llm import get_backend
    from curate.synth.generate import Synthesiser
    from curate.synth.library import install_starter
    from curate.synth.merge import merge_identical
    from curate.synth.sampling import parse_k

    if params.starter:
        install_starter(ctx.store)
        merge_identical(ctx.store)
    backend = None if params.no_llm else get_backend(
        params.backend, params.model, store=ctx.store, **({"base_url": params.base_url} if params.base_url else {}))
    report = Synthesiser(params.n, k=parse_k(params.k), strategy=params.strategy, backend=backend, seed=params.seed,
                         verify_samples=params.verify_samples, origin=params.origin, max_attempts=params.max_attempts,
                         max_tokens=params.max_tokens, timeout=params.timeout, source=params.source,
                         compose=params.compose).run(ctx.store, log=ctx.log)
    return StepResult(counts={"attempts": report.attempts, "kept": report.kept}, reasons=dict(report.rejected),
                      run_id=report.run_id)
