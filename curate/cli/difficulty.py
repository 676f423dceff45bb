"""`curate score difficulty` (MCTS search per problem) and `curate select difficulty` (keep the hard ones)."""

from __future__ import annotations

from enum import Enum

import typer

from curate.cli.app import console, select_app, store_of
from curate.cli.models import BACKEND, BASE_URL, LLM_MODEL
from curate.cli.score import score_app
from curate.cli.select import WHERE, report_run
from curate.mcts import LLMJudge, RuleJudge, Sampling, SearchConfig
from curate.models.llm import LLMBackend, get_backend
from curate.scoring.difficulty import score_difficulty
from curate.selectors import Pool, run_selection
from curate.selectors.difficulty import DifficultySelector, default_scorer
from curate.store import Store


class JudgeKind(str, Enum):
    rule = "rule"
    llm = "llm"


def _backend(store: Store, backend: str, model: str, base_url: str | None, batch_size: int) -> LLMBackend:
    options: dict = {"base_url": base_url} if base_url else {}
    if backend == "transformers":
        options["batch_size"] = batch_size
    return get_backend(backend, model, store=store, **options)


@score_app.command("difficulty")
def score_difficulty_command(
    ctx: typer.Context,
    backend: str = BACKEND,
    model: str = LLM_MODEL,
    base_url: str = BASE_URL,
    judge: JudgeKind = typer.Option(JudgeKind.rule, "--judge", help="rule: the final answer against the gold one "
                                    "(numbers, fractions, MATH normal form); llm: the reference's judge prompt."),
    judge_backend: str = typer.Option(None, "--judge-backend", help="LLM judge backend (default: --backend)."),
    judge_model: str = typer.Option(None, "--judge-model", help="LLM judge model (default: --model)."),
    judge_base_url: str = typer.Option(None, "--judge-base-url", help="LLM judge server (default: --base-url)."),
    judge_temperature: float = typer.Option(0.7, "--judge-temperature", min=0.0),
    judge_top_p: float = typer.Option(0.8, "--judge-top-p", min=0.0, max=1.0),
    judge_max_tokens: int = typer.Option(512, "--judge-max-tokens", min=1),
    max_iterations: int = typer.Option(50, "--max-iterations", min=1, help="Iterations before a problem counts "
                                                                           "as unsolved."),
    expansions: int = typer.Option(3, "--expansions", min=1, help="Children sampled per expansion."),
    max_steps: int = typer.Option(10, "--max-steps", min=1, help="A chain of this many steps is finished."),
    rollout_limit: int = typer.Option(10, "--rollout-limit", min=1, help="Rollout steps per iteration, at most."),
    c_puct: float = typer.Option(1.0, "--c-puct", min=0.0, help="Exploration constant of the selection rule."),
    temperature: float = typer.Option(0.5, "--temperature", min=0.0, help="Policy sampling temperature."),
    top_p: float = typer.Option(0.9, "--top-p", min=0.0, max=1.0),
    max_new_tokens: int = typer.Option(2048, "--max-new-tokens", min=1, help="Per step."),
    seed: int = typer.Option(0, "--seed"),
    concurrency: int = typer.Option(32, "--concurrency", min=1, help="Problems searched at once (their requests "
                                                                      "go to the backend together)."),
    batch_size: int = typer.Option(None, "--batch-size", min=1, help="transformers backend: prompts per forward "
                                                                     "batch (default: --concurrency)."),
    where: str = WHERE,
    limit: int = typer.Option(None, "--limit", min=1, help="Search at most this many problems in this run."),
    scorer: str = typer.Option(None, "--scorer", help="Score name (default: mcts_iters:<model>)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace scores made with other parameters."),
) -> None:
    """MCTS difficulty (ThinkLite-VL): iterations the policy needs to solve each problem with a gold answer."""
    store = store_of(ctx)
    policy = _backend(store, backend, model, base_url, batch_size or concurrency)
    judge_llm = None
    if judge is JudgeKind.llm:
        same = (judge_backend or backend, judge_model or model, judge_base_url or base_url) == (backend, model, base_url)
        judge_llm = policy if same else _backend(store, judge_backend or backend, judge_model or model,
                                                 judge_base_url or base_url, batch_size or concurrency)
    the_judge = RuleJudge() if judge_llm is None else LLMJudge(
        judge_llm, temperature=judge_temperature, top_p=judge_top_p, max_tokens=judge_max_tokens, seed=seed)
    config = SearchConfig(max_iterations=max_iterations, expansions=expansions, max_steps=max_steps,
                          rollout_limit=rollout_limit, c_puct=c_puct, seed=seed)
    try:
        report = score_difficulty(store, policy, the_judge, config,
                                  Sampling(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens),
                                  where=where, limit=limit, concurrency=concurrency, scorer=scorer, overwrite=overwrite)
    finally:
        policy.close()
        if judge_llm is not None and judge_llm is not policy:
            judge_llm.close()
    console.print(f"searched {report.searched} problems ({report.already} already scored) as {report.scorer}: "
                  f"{report.solved} solved, {report.unsolved} unsolved, {report.failed} failed; "
                  f"{report.requests} requests, {report.calls} sent to a model, {report.requests - report.calls} "
                  f"from the cache; {report.problems_per_minute:.1f} problems/min")
    console.print(report.run_id)


@select_app.command("difficulty")
def select_difficulty_command(
    ctx: typer.Context,
    scorer: str = typer.Option(None, "--scorer", help="Which difficulty scores (default: the only mcts_iters:* "
                                                      "in the store)."),
    min_iters: int = typer.Option(5, "--min-iters", min=0, help="Keep problems solved at a 0-based iteration "
                                                                "above this."),
    keep_unsolved: bool = typer.Option(True, "--keep-unsolved/--drop-unsolved",
                                       help="Keep the problems not solved within the search's cap."),
    unsolved_first: bool = typer.Option(True, "--unsolved-first/--unsolved-last",
                                        help="With --budget: rank unsolved problems before (or after) the solved."),
    budget: int = typer.Option(None, "--budget", "-n", min=1, help="Keep at most this many, hardest first."),
    where: str = WHERE,
) -> None:
    """Keep the hard problems: unsolved, or solved after more than --min-iters iterations (ThinkLite-VL)."""
    store = store_of(ctx)
    selector = DifficultySelector(scorer=scorer or default_scorer(store), min_iters=min_iters,
                                  keep_unsolved=keep_unsolved, unsolved_first=unsolved_first)
    pool = Pool.from_store(store, where)
    run_id = run_selection(store, selector, pool, budget)
    with store.connect() as con:
        selected = con.execute("SELECT count(*) FROM selections WHERE run_id = ? AND selected", [run_id]).fetchone()[0]
    report_run(run_id, len(pool), selected)
