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


def _llm(ctx: StepContext, backend: str, model: str, base_url: str | None, **options):
    """The step's LLM, behind the store's response cache (so a retried step repeats no call)."""
    from curate.models.llm import get_backend

    return get_backend(backend, model, store=ctx.store, **({"base_url": base_url} if base_url else {}), **options)


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

    # Under the Ray runner the encoding goes to the cluster's model replicas (the same rows either way).
    report = embed_samples(ctx.store, params.model, params.view, where=params.where, batch_size=params.batch_size,
                           progress=False, ray=ctx.runner == "ray", ray_address=ctx.ray_address)
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
    llm = _llm(ctx, params.backend, params.model, params.base_url) if params.seeds_from or not params.no_llm else None
    backend = None if params.no_llm else llm
    counts = {}
    if params.seeds_from:
        from curate.synth.extract import LibraryBuilder

        built = LibraryBuilder(llm, limit=params.seed_limit, max_tokens=max(params.max_tokens, 768),
                               timeout=params.timeout, seed=params.seed).run(ctx.store, params.seeds_from)
        counts = {"seeds": built.seeds, "seeds_kept": built.kept, "functions_added": built.functions_added}
    report = Synthesiser(params.n, k=parse_k(params.k), strategy=params.strategy, backend=backend, seed=params.seed,
                         verify_samples=params.verify_samples, origin=params.origin, max_attempts=params.max_attempts,
                         max_tokens=params.max_tokens, timeout=params.timeout, source=params.source,
                         compose=params.compose).run(ctx.store, log=ctx.log)
    return StepResult(counts={**counts, "attempts": report.attempts, "kept": report.kept},
                      reasons=dict(report.rejected), run_id=report.run_id)


# -- score -----------------------------------------------------------------------------------------


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


def _check_options(what: str, function, options: dict[str, Any]) -> None:
    """Refuse an unknown or misspelt option before any model loads."""
    import inspect

    accepted = inspect.signature(function).parameters
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        keyword = [name for name, p in accepted.items() if p.kind is p.KEYWORD_ONLY]
        raise CurateError(f"{what}: unknown option {', '.join(unknown)}; valid: {', '.join(keyword)}")


@scorer("deita", "rubric", "pairwise")
def quality_scorer(ctx: StepContext, params: ScoreParams) -> StepResult:
    from curate.scoring.quality.run import score_quality

    _check_options(f"score {params.method}", score_quality, params.params)
    llm = _llm(ctx, params.backend, params.model, params.base_url)
    report = score_quality(ctx.store, llm, params.method, where=params.where, limit=params.limit,
                           flow_run_id=ctx.flow_run_id, **params.params)
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
    concurrency = options.get("concurrency", 32)
    extra = {"batch_size": concurrency} if params.backend == "transformers" else {}
    policy = _llm(ctx, params.backend, params.model, params.base_url, **extra)
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
    _check_options("score import", import_scores, options)
    options["path"] = str(ctx.recipe.resolve(options["path"]))
    with start_run(ctx.store, "score:import", options, flow_run_id=ctx.flow_run_id) as run:
        report = import_scores(ctx.store, options.pop("path"), options.pop("scorer"), run_id=run.run_id, **options)
        run.counts.update({"written": report.written, "unmatched": report.unmatched, "errors": len(report.errors)})
    if report.errors:
        raise CurateError(f"score import: {len(report.errors)} bad rows, first: {report.errors[0]}")
    return StepResult(counts=dict(run.counts), run_id=run.run_id)


# -- label -----------------------------------------------------------------------------------------


class LabelParams(StepParams):
    method: str = Field(description="field, embedding or llm (as `curate label METHOD`)")
    where: str | None = None
    origin: str | None = Field(None, description="default: the method's name (source for field --source)")
    label_vocab: str | None = Field(None, description="JSON list of labels (MIG's valid_tags.json)")
    path: str | None = Field(None, description="field: JSON path in the record's meta")
    source: str | None = Field(None, description="field: label by input: file or name")
    top_k: int = Field(5, ge=1, description="embedding: labels per sample")
    floor: float = Field(0.3, description="embedding: least cosine")
    model: str | None = Field(None, description="embedding model (embedding) or LLM (llm)")
    batch_size: int = Field(64, ge=1)
    backend: str = "transformers"
    base_url: str | None = None
    map_to_vocab: bool = False
    map_floor: float = 0.8
    label_model: str | None = None
    max_tokens: int = Field(256, ge=1)
    max_chars: int = Field(2000, ge=1)


@step("label", LabelParams, retries=1)
def label_step(ctx: StepContext, params: LabelParams) -> StepResult:
    from curate.labels import label_samples, load_vocab
    from curate.selectors import Pool

    vocab = load_vocab(ctx.recipe.resolve(params.label_vocab)) if params.label_vocab else None
    pool = Pool.from_store(ctx.store, params.where)
    options = params.model_dump(exclude={"method"})
    if params.method == "field":
        from curate.labels.field import from_meta, from_source, json_path

        if (params.path is None) == (params.source is None):
            raise CurateError("label step field: give one of path or source")
        origin = params.origin or ("field" if params.path else "source")
        chunks = (from_meta(pool, json_path(params.path), origin) if params.path
                  else from_source(pool, params.source, origin))
    elif params.method == "embedding":
        from curate.labels.embedding import by_embedding

        if vocab is None:
            raise CurateError("label step embedding: needs label_vocab")
        origin = params.origin or "embedding"
        chunks = by_embedding(pool, vocab, top_k=params.top_k, floor=params.floor, model=params.model,
                              origin=origin, batch_size=params.batch_size, progress=False)
    elif params.method == "llm":
        from curate.labels.llm import VocabularyMapper, by_llm
        from curate.models.embed import DEFAULT_MODEL

        if params.map_to_vocab and vocab is None:
            raise CurateError("label step llm: map_to_vocab needs label_vocab")
        origin = params.origin or "llm"
        mapper = (VocabularyMapper(vocab, params.map_floor, params.label_model or DEFAULT_MODEL, ctx.store)
                  if params.map_to_vocab else None)
        llm = _llm(ctx, params.backend, params.model or "smollm2-135m", params.base_url)
        chunks = by_llm(pool, llm, origin=origin, mapper=mapper, max_tokens=params.max_tokens,
                        max_chars=params.max_chars)
    else:
        raise CurateError(f"label step: unknown method {params.method!r}; valid: embedding, field, llm")
    report = label_samples(ctx.store, params.method, origin, chunks, vocab=vocab, params=options)
    return StepResult(counts={"labelled": report.labelled, "covered": report.covered, "labels": report.labels,
                              "distinct": report.distinct, "failed": report.failed}, run_id=report.run_id)
