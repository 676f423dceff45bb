"""MCTS difficulty scores: per problem, the 0-based iteration at which the policy first solved it.

    report = score_difficulty(store, policy, RuleJudge())      # every sample with a gold answer

Problems are the samples with a `gold_answer` (the gsm8k and math dialects, synthetic problems); the
question is the first user turn. Each result is a row of `scores` under `mcts_iters:<policy model>`:
value = the iteration index when solved, else `max_iterations` (not solved within the cap: the search
needs at least that many); `details` has everything else (solved, iterations or null, calls, tokens,
the winning chain, the models and parameters), so any threshold can be applied later without
searching again. A search that failed (a policy or judge call that errored) is stored as failed with
its reason, and searched again by the next run.

Results are written every few seconds; a re-run skips the problems already scored with the same
parameters, and replays the unfinished ones from the response cache.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from tqdm import tqdm

from curate.answers import final_answer
from curate.errors import CurateError
from curate.mcts import LLMJudge, Problem, ProblemResult, RuleJudge, Sampling, SearchConfig, SearchDriver
from curate.models.llm import LLMBackend
from curate.scoring import ScoreRow, write_scores
from curate.selectors.base import validate_predicate
from curate.store import Store
from curate.store.runs import params_hash, start_run

SCORER_PREFIX = "mcts_iters"


def scorer_name(policy_model: str) -> str:
    """`mcts_iters:<policy model>`: searches by two policies never overwrite each other."""
    return f"{SCORER_PREFIX}:{policy_model}"


@dataclass
class DifficultyReport:
    run_id: str
    scorer: str
    searched: int = 0          # problems searched by this run
    already: int = 0           # problems skipped: scored before with the same parameters
    solved: int = 0
    unsolved: int = 0
    failed: int = 0
    requests: int = 0          # LLM requests the searches made
    calls: int = 0             # of which sent to a model (the rest answered by the response cache)
    seconds: float = 0.0

    @property
    def problems_per_minute(self) -> float:
        return 60.0 * self.searched / self.seconds if self.seconds else 0.0


def load_problems(store: Store, where: str | None = None) -> list[Problem]:
    """Samples with a gold answer and a question, by sample id."""
    predicate = validate_predicate(store, where) if where else "TRUE"
    with store.connect() as con:
        try:
            rows = con.execute(f"SELECT sample_id, prompt, gold_answer FROM samples WHERE gold_answer IS NOT NULL "
                               f"AND prompt IS NOT NULL AND {predicate} ORDER BY sample_id").fetchall()
        except Exception as error:  # DuckDB raises several types for a bad predicate
            raise CurateError(f"--where {where!r}: {str(error).splitlines()[0]}") from error
    return [Problem(sample_id, question, gold) for sample_id, question, gold in rows]


def _backends(policy: LLMBackend, judge: RuleJudge | LLMJudge) -> list[LLMBackend]:
    return [policy] + ([judge.backend] if isinstance(judge, LLMJudge) and judge.backend is not policy else [])


def search_params(policy: LLMBackend, judge: RuleJudge | LLMJudge, config: SearchConfig,
                  sampling: Sampling) -> dict[str, Any]:
    """What decides a search's result (not how fast it runs): two runs with equal params are comparable."""
    return {"policy": {"backend": policy.name, "model": policy.model}, "judge": judge.describe(),
            "search": asdict(config), "sampling": asdict(sampling)}


def _row(result: ProblemResult, params: dict[str, Any], digest: str) -> ScoreRow:
    counts = {"generation_calls": result.generation_calls, "judge_calls": result.judge_calls,
              "sequences": result.sequences,
              "tokens": {"prompt": result.prompt_tokens, "generated": result.generated_tokens,
                         "judge_prompt": result.judge_prompt_tokens, "judge_generated": result.judge_tokens},
              "policy": params["policy"], "judge": params["judge"], "params_hash": digest}
    outcome = result.outcome
    if outcome is None:
        return ScoreRow(result.problem.sample_id, None, counts, error=result.error)
    chain = list(outcome.chain) if outcome.chain is not None else None
    details = {"solved": outcome.solved, "iterations": outcome.iteration, "iterations_run": outcome.iterations_run,
               "max_iterations": params["search"]["max_iterations"], **counts,
               "verdicts_reused": outcome.verdicts_reused, "chain": chain,
               "final_answer": final_answer("".join(chain)) if chain else None,
               "gold_answer": result.problem.gold}
    value = outcome.iteration if outcome.solved else params["search"]["max_iterations"]
    return ScoreRow(result.problem.sample_id, float(value), details)


def _partition(store: Store, scorer: str, problems: Sequence[Problem], digest: str,
               overwrite: bool) -> tuple[list[Problem], int]:
    """(problems to search, how many are already scored with these parameters)."""
    with store.connect() as con:
        rows = con.execute("SELECT sample_id, details->>'params_hash' FROM scores WHERE scorer = ? AND status = 'ok'",
                           [scorer]).fetchall()
    scored = dict(rows)
    same = {p.sample_id for p in problems if scored.get(p.sample_id) == digest}
    other = [p.sample_id for p in problems if p.sample_id in scored and p.sample_id not in same]
    if other and not overwrite:
        raise CurateError(f"{len(other)} of these problems already have {scorer} scores from other parameters "
                          f"(e.g. sample {other[0]}); pass --scorer NAME to keep both, or --overwrite to replace them")
    return [p for p in problems if p.sample_id not in same], len(same)


def score_difficulty(store: Store, policy: LLMBackend, judge: RuleJudge | LLMJudge,
                     config: SearchConfig | None = None, sampling: Sampling | None = None, *,
                     where: str | None = None, limit: int | None = None, concurrency: int = 32,
                     scorer: str | None = None, overwrite: bool = False, progress: bool = True,
                     flush_seconds: float = 5.0) -> DifficultyReport:
    """Search every problem not yet scored (at most `limit` of them) and store the results."""
    scorer = scorer or scorer_name(policy.model)
    config, sampling = config or SearchConfig(), sampling or Sampling()
    params = search_params(policy, judge, config, sampling)
    digest = params_hash(params)
    todo, already = _partition(store, scorer, load_problems(store, where), digest, overwrite)
    todo = todo[:limit] if limit is not None else todo
    backends = _backends(policy, judge)
    calls_before = sum(getattr(b, "calls", 0) for b in backends)

    run_params = {**params, "scorer": scorer, "where": where, "limit": limit, "concurrency": concurrency}
    # No store.session() here: it would hold the file through each (long) model call, and keep
    # `curate sql` out for that long; the cache and the writer open short connections instead.
    with start_run(store, "score:difficulty", run_params) as run:
        report = DifficultyReport(run.run_id, scorer, already=already)
        driver = SearchDriver(policy, judge, config, sampling, concurrency=concurrency)
        bar = tqdm(total=len(todo), unit=" problems", desc=f"mcts {policy.model}", disable=not progress or None)
        started = last_flush = time.perf_counter()
        pending: list[ScoreRow] = []

        def flush() -> None:
            write_scores(store, scorer, pending, run.run_id)
            pending.clear()

        def show() -> None:
            calls = sum(getattr(b, "calls", 0) for b in backends) - calls_before
            bar.set_postfix(solved=report.solved, failed=report.failed,
                            calls_per_s=f"{calls / max(time.perf_counter() - started, 1e-9):.2f}")

        try:
            for result in driver.run(todo, on_round=show):
                pending.append(_row(result, params, digest))
                report.searched += 1
                if result.outcome is None:
                    report.failed += 1
                elif result.outcome.solved:
                    report.solved += 1
                else:
                    report.unsolved += 1
                bar.update(1)
                if (now := time.perf_counter()) - last_flush >= flush_seconds:
                    flush()
                    last_flush = now
        finally:
            flush()       # on an interrupt too: what finished is kept
            bar.close()
            report.seconds = time.perf_counter() - started
            report.requests = driver.requests
            report.calls = sum(getattr(b, "calls", 0) for b in backends) - calls_before
            run.counts.update({"searched": report.searched, "already": already, "solved": report.solved,
                               "unsolved": report.unsolved, "failed": report.failed, "requests": report.requests,
                               "calls": report.calls})
    return report

