"""`curate score quality`, `curate score fit-pairwise`, and `curate select quality|deita|kmeans`."""

from __future__ import annotations

from enum import Enum

import typer
from tqdm import tqdm

from curate.cli.app import console, select_app, store_of
from curate.cli.models import BACKEND, BASE_URL, LLM_MODEL, View, make_backend
from curate.cli.score import score_app
from curate.cli.select import BUDGET, WHERE, report_run
from curate.errors import CurateError
from curate.scoring import quality, scored_ids
from curate.scoring.quality import deita as deita_scoring
from curate.scoring.quality import pairwise, rubric
from curate.selectors import Pool, run_selection
from curate.selectors.deita import DeitaSelector
from curate.selectors.kmeans import K_GRID, KMeansSelector
from curate.selectors.quality import QualitySelector
from curate.store.runs import start_run


class Method(str, Enum):
    deita = "deita"
    rubric = "rubric"
    pairwise = "pairwise"


class Read(str, Enum):
    logprobs = "logprobs"
    votes = "votes"


class Allocation(str, Enum):
    proportional = "proportional"
    equal = "equal"
    reference = "reference"


class KMeansBackend(str, Enum):
    auto = "auto"
    faiss = "faiss"
    sklearn = "sklearn"


class Update(str, Enum):
    eq6 = "eq6"
    softmax = "softmax"


def _progress(total: int, what: str):
    bar = tqdm(total=total, desc=what, unit=" samples" if what != "pairs" else " pairs", disable=None)
    return bar.update, bar


@score_app.command("quality")
def quality_command(
    ctx: typer.Context,
    method: Method = typer.Option(..., "--method", help="deita (complexity x quality, 1-6), rubric (1-10 grade) "
                                                        "or pairwise (QuRating + Bradley-Terry)."),
    backend: str = BACKEND, model: str = LLM_MODEL, base_url: str = BASE_URL,
    criterion: str = typer.Option("educational_value", "--criterion",
                                  help=f"rubric/pairwise: {', '.join(quality.CRITERIA)}, or a name for "
                                       "--criterion-text."),
    criterion_text: str = typer.Option(None, "--criterion-text",
                                       help="A custom criterion: completes 'choose the text which ...' "
                                            "(pairwise) or 'rate ... based on ...' (rubric)."),
    read: Read = typer.Option(Read.logprobs, "--read", help="rubric/pairwise: read the answer from log-probs, "
                                                            "or count sampled answers (votes)."),
    samples: int = typer.Option(20, "--samples", min=1, help="Answers sampled per prompt with --read votes."),
    comparisons: int = typer.Option(4, "--comparisons", min=1, help="pairwise: random partners per sample."),
    confidence: float = typer.Option(0.25, "--confidence", min=0.0, max=0.5,
                                     help="pairwise: fit only judgments with |p - 0.5| >= this."),
    l2: float = typer.Option(0.01, "--l2", min=1e-9, help="pairwise: L2 weight of the Bradley-Terry fit."),
    top_logprobs: int = typer.Option(None, "--top-logprobs", min=1,
                                     help="Log-probs asked per token (default 1000 for deita, as its reference; "
                                          "20 otherwise)."),
    max_chars: int = typer.Option(2000, "--max-chars", min=1, help="rubric/pairwise: cut each text to this."),
    where: str = WHERE,
    limit: int = typer.Option(None, "--limit", min=1, help="Score at most this many samples."),
    rescore: bool = typer.Option(False, "--rescore", help="deita/rubric: score samples that already have a score."),
    seed: int = typer.Option(0, "--seed", help="pairwise pairing and vote sampling seed."),
) -> None:
    """Score samples with an LLM judge; scores go to `scores`, failures with their reasons."""
    store = store_of(ctx)
    llm = make_backend(store, backend, model, base_url)
    judged = quality.get_criterion(criterion, criterion_text) if method is not Method.deita else None
    top = top_logprobs or (deita_scoring.DEFAULT_TOP_LOGPROBS if method is Method.deita else 20)
    if method is Method.deita:
        names = list(deita_scoring.scorer_names(llm.model).values())
        resume_name = names[2]           # deita:M has a value only when every turn scored
    elif method is Method.rubric:
        names = [rubric.scorer_name(judged, llm.model)]
        resume_name = names[0]
    else:                                # pairs are redrawn; the response cache makes a re-run cheap
        names = [pairwise.scorer_name(judged, llm.model)]
        resume_name = None
    skip = scored_ids(store, resume_name) if resume_name and not rescore else set()
    targets = quality.load_targets(store, where, limit, skip)
    if not len(targets):
        console.print(f"nothing to score ({len(skip)} already scored; --rescore to redo)", highlight=False)
        return
    params = {"method": method.value, "backend": backend, "model": model, "criterion": judged and judged.name,
              "criterion_text": criterion_text, "read": read.value, "samples": samples, "comparisons": comparisons,
              "confidence": confidence, "l2": l2, "top_logprobs": top, "max_chars": max_chars, "where": where,
              "limit": limit, "seed": seed}
    with start_run(store, f"score:{method.value}", params) as run:
        if method is Method.deita:
            update, bar = _progress(len(targets), "deita")
            counts = quality.score_deita(store, llm, targets, run_id=run.run_id, top_logprobs=top, progress=update)
        elif method is Method.rubric:
            update, bar = _progress(len(targets), "rubric")
            counts = quality.score_rubric(store, llm, targets, judged, read=read.value, top_logprobs=top,
                                          samples=samples, seed=seed, max_chars=max_chars, run_id=run.run_id,
                                          progress=update)
        else:
            update, bar = _progress(len(pairwise.random_pairs(len(targets), comparisons, seed)), "pairs")
            counts = quality.judge(store, llm, targets, judged, comparisons=comparisons, read=read.value,
                                   top_logprobs=top, samples=samples, seed=seed, max_chars=max_chars,
                                   run_id=run.run_id, progress=update)
            fitted = quality.fit_ratings(store, names[0], margin=confidence, l2=l2, run_id=run.run_id)
            counts = {"judgments_ok": counts["ok"], "judgments_failed": counts["failed"],
                      "unpaired": counts["unpaired"], **fitted}
        bar.close()
        run.counts.update(counts)
    console.print(f"{run.run_id}: {', '.join(f'{v} {k}' for k, v in counts.items())}"
                  + (f"; {len(skip)} already scored" if skip else ""), highlight=False)
    console.print("scores: " + ", ".join(names), highlight=False)


@score_app.command("fit-pairwise")
def fit_pairwise_command(
    ctx: typer.Context,
    scorer: str = typer.Option(..., "--scorer", help="The pairwise scorer, e.g. qurating:educational_value:M."),
    confidence: float = typer.Option(0.25, "--confidence", min=0.0, max=0.5,
                                     help="Fit only judgments with |p - 0.5| >= this."),
    l2: float = typer.Option(0.01, "--l2", min=1e-9, help="L2 weight on the ratings."),
    label_temperature: float = typer.Option(1.0, "--label-temperature", min=1e-6,
                                            help="Sharpen (<1) or soften (>1) the judgments first (QuRating)."),
) -> None:
    """Refit Bradley-Terry ratings from the stored pairwise judgments of a scorer."""
    store = store_of(ctx)
    params = {"scorer": scorer, "confidence": confidence, "l2": l2, "label_temperature": label_temperature}
    with start_run(store, "score:fit-pairwise", params) as run:
        counts = quality.fit_ratings(store, scorer, margin=confidence, l2=l2, label_temperature=label_temperature,
                                     run_id=run.run_id)
        run.counts.update(counts)
    console.print(f"{scorer}: {', '.join(f'{v} {k}' for k, v in counts.items())}", highlight=False)


SCORE = typer.Option(..., "--score", help="Scorer name in `scores` (e.g. deita:smollm2-135m).")
EMBEDDING_MODEL = typer.Option(None, "--embedding-model", help="Embedding model (default: all-MiniLM-L6-v2).")


@select_app.command("quality")
def select_quality_command(
    ctx: typer.Context,
    score: str = SCORE,
    budget: int = typer.Option(None, "--budget", "-n", min=1, help="How many samples to select."),
    budget_tokens: int = typer.Option(None, "--budget-tokens", min=1, help="Select until this many tokens instead."),
    temperature: float = typer.Option(1.0, "--temperature", min=0.0, help="τ: 0 takes the top; higher is more random."),
    normalize: bool = typer.Option(True, "--normalize/--no-normalize", help="z-normalise the score first."),
    tokenizer: str = typer.Option("smollm2-135m", "--tokenizer", help="Counts tokens for --budget-tokens."),
    seed: int = typer.Option(0, "--seed"),
    where: str = WHERE,
) -> None:
    """QuRating's sampler: without replacement, p ∝ exp(z(score) / τ); a count or a token budget."""
    store = store_of(ctx)
    pool = Pool.from_store(store, where)
    selector = QualitySelector(score=score, temperature=temperature, budget_tokens=budget_tokens,
                               normalize=normalize, seed=seed, tokenizer=tokenizer)
    run_id = run_selection(store, selector, pool, budget)
    report_run(run_id, len(pool), _selected(store, run_id))


@select_app.command("deita")
def select_deita_command(
    ctx: typer.Context,
    score: str = SCORE,
    budget: int = BUDGET,
    threshold: float = typer.Option(0.9, "--threshold", help="Drop a sample whose cosine to a kept one exceeds this."),
    embedding_model: str = EMBEDDING_MODEL,
    view: View = typer.Option(View.conversation, "--view", help="Embedding view (DEITA embeds the conversation)."),
    where: str = WHERE,
) -> None:
    """DEITA: highest score first, skipping samples too similar to one already kept."""
    store = store_of(ctx)
    pool = Pool.from_store(store, where)
    selector = DeitaSelector(score=score, threshold=threshold, embedding_model=embedding_model, view=view.value)
    run_id = run_selection(store, selector, pool, budget)
    report_run(run_id, len(pool), _selected(store, run_id))


def _k(value: str) -> int | str:
    if value == "auto":
        return value
    if not value.isdigit() or int(value) < 1:
        raise CurateError(f"--k {value!r}: expected a positive number of clusters or 'auto'")
    return int(value)


@select_app.command("kmeans")
def select_kmeans_command(
    ctx: typer.Context,
    budget: int = BUDGET,
    k: str = typer.Option("auto", "--k", help="Clusters, or 'auto' (best silhouette over --k-grid on a sample)."),
    score: str = typer.Option(None, "--score", help="Quality score for softmax(score/τ) draws (kMQ); "
                                                    "none: uniform (kM-Random)."),
    temperature: float = typer.Option(1.0, "--temperature", min=0.0, help="τ of the within-cluster softmax."),
    allocation: Allocation = typer.Option(Allocation.proportional, "--allocation",
                                          help="Budget per cluster: proportional to its size, equal, or "
                                               "reference (the repo's int(budget/k) each, no refill)."),
    backend: KMeansBackend = typer.Option(KMeansBackend.auto, "--backend", help="k-means: faiss, sklearn, or auto."),
    embedding_model: str = EMBEDDING_MODEL,
    view: View = typer.Option(View.prompt, "--view", help="Embedding view (kMQ clusters prompts)."),
    seed: int = typer.Option(0, "--seed"),
    niter: int = typer.Option(20, "--niter", min=1, help="k-means iterations (the reference: 300)."),
    nredo: int = typer.Option(1, "--nredo", min=1, help="k-means restarts, best kept (the reference: 5)."),
    max_points_per_centroid: int = typer.Option(64, "--max-points-per-centroid", min=1,
                                                help="Train on at most k x this many samples (faiss's default: 256)."),
    k_grid: str = typer.Option(",".join(map(str, K_GRID)), "--k-grid", help="Candidates for --k auto."),
    from_run: str = typer.Option(None, "--from-run", help="Refinement round: continue this kmeans run."),
    feedback: str = typer.Option(None, "--feedback", help="Refinement round: per-sample feedback score of "
                                                          "--from-run's picks (e.g. imported rewards)."),
    update: Update = typer.Option(Update.eq6, "--update", help="Refinement weight update: eq6 (paper) or "
                                                               "softmax (the repo's iter.py)."),
    where: str = WHERE,
) -> None:
    """kMQ: k-means on prompt embeddings, budget by cluster size, quality-weighted draws inside clusters."""
    store = store_of(ctx)
    try:
        grid = tuple(int(v) for v in k_grid.split(","))
    except ValueError:
        raise CurateError(f"--k-grid {k_grid!r}: expected comma-separated numbers") from None
    pool = Pool.from_store(store, where)
    selector = KMeansSelector(k=_k(k), score=score, temperature=temperature, allocation=allocation.value,
                              backend=backend.value, embedding_model=embedding_model, view=view.value, seed=seed,
                              niter=niter, nredo=nredo, max_points_per_centroid=max_points_per_centroid,
                              k_grid=grid, from_run=from_run, feedback=feedback, update=update.value)
    run_id = run_selection(store, selector, pool, budget)
    report_run(run_id, len(pool), _selected(store, run_id))


def _selected(store, run_id: str) -> int:
    with store.connect() as con:
        return con.execute("SELECT count(*) FROM selections WHERE run_id = ? AND selected", [run_id]).fetchone()[0]
