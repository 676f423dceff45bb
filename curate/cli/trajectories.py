"""`curate select trajectory`: SimpleDeepSearcher-style curation of search trajectories."""

from __future__ import annotations

import typer

from curate.cli.app import select_app, store_of
from curate.cli.select import WHERE, report_run
from curate.errors import CurateError
from curate.selectors import Pool, run_selection
from curate.selectors.trajectory import CRITERIA, TrajectorySelector
from curate.store.runs import get_run


@select_app.command("trajectory")
def trajectory_command(
    ctx: typer.Context,
    budget: int = typer.Option(None, "--budget", "-n", min=1,
                               help="How many questions to keep (one trajectory each); default: all that qualify."),
    criteria: str = typer.Option(",".join(CRITERIA), "--criteria",
                                 help="Comma-separated criteria a trajectory must meet (default: all)."),
    max_extra_think_closes: int = typer.Option(0, "--max-extra-think-closes", min=0,
                                               help="</think> allowed beyond one per think block opened."),
    segment_word_limit: int = typer.Option(300, "--segment-word-limit", min=1,
                                           help="The first and the longest assistant turn must be under this many words."),
    max_fillers: int = typer.Option(3, "--max-fillers", min=0,
                                    help='Most "Alternatively", "hmm" or "wait" allowed in one assistant turn.'),
    max_trigram_share: float = typer.Option(0.3, "--max-trigram-share", min=0, max=1,
                                            help="Most share of all word trigrams one trigram may have."),
    min_documents_per_search: float = typer.Option(0.95, "--min-documents-per-search", min=0,
                                                   help="Unique documents per search must exceed this times top-k."),
    top_k: int = typer.Option(None, "--top-k", min=1,
                              help="Documents one search returns (default: the most one search of the trajectory returned)."),
    max_words: int = typer.Option(3000, "--max-words", min=1, help="Most words a response may have."),
    all_solved_drop: float = typer.Option(0.8, "--all-solved-drop", min=0, max=1,
                                          help="Probability of dropping a question every rollout solved."),
    seed: int = typer.Option(42, "--seed", help="Seed of the all-solved drops."),
    where: str = WHERE,
) -> None:
    """Keep, per question, the valid trajectory with the fewest searches (SimpleDeepSearcher's curation)."""
    chosen = tuple(name.strip() for name in criteria.split(",") if name.strip())
    unknown = sorted(set(chosen) - set(CRITERIA))
    if unknown:
        raise CurateError(f"--criteria: unknown {', '.join(unknown)}; choose from {', '.join(CRITERIA)}")
    store = store_of(ctx)
    pool = Pool.from_store(store, "kind = 'trajectory'" + (f" AND ({where})" if where else ""))
    selector = TrajectorySelector(
        criteria=chosen, max_extra_think_closes=max_extra_think_closes, segment_word_limit=segment_word_limit,
        max_fillers=max_fillers, max_trigram_share=max_trigram_share,
        min_documents_per_search=min_documents_per_search, top_k=top_k, max_words=max_words,
        all_solved_drop=all_solved_drop, seed=seed)
    run_id = run_selection(store, selector, pool, budget)
    report_run(run_id, len(pool), get_run(store, run_id)["counts"]["selected"])
