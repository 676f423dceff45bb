"""`curate select random` (other selectors add their commands in their own modules)."""

from __future__ import annotations

import typer

from curate.cli.app import console, select_app, store_of
from curate.selectors import Pool, run_selection
from curate.selectors.random import RandomSelector

BUDGET = typer.Option(..., "--budget", "-n", min=1, help="How many samples to select.")
WHERE = typer.Option(None, "--where", help="SQL predicate over `samples` restricting the pool, "
                                           "e.g. \"kind = 'instruction' AND chars < 4000\".")


def report_run(run_id: str, pool_size: int, selected: int) -> None:
    """Every select command ends the same way: a summary, then the run id alone on the last line."""
    console.print(f"selected {selected} of {pool_size} samples", highlight=False)
    console.print(run_id, highlight=False)


@select_app.command("random")
def random_command(
    ctx: typer.Context,
    budget: int = BUDGET,
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed and pool give the same draw."),
    where: str = WHERE,
) -> None:
    """Uniform random sample: the baseline to compare every selector against."""
    store = store_of(ctx)
    pool = Pool.from_store(store, where)
    run_id = run_selection(store, RandomSelector(seed=seed), pool, budget)
    report_run(run_id, len(pool), min(budget, len(pool)))
