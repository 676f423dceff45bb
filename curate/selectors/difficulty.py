"""Keep the problems a policy found hard: ThinkLite-VL's rule over MCTS difficulty scores.

keep = unsolved within the search's cap (with keep_unsolved), or solved at a 0-based iteration
> min_iters. With a budget, the kept are ranked by iterations, hardest first, unsolved ones first or
last (`unsolved_first`), ties by sample id; those past the budget are dropped as "over budget".
Samples without a score, or whose search failed, are dropped and say so.
Reads the `mcts_iters:<model>` rows that `curate score difficulty` wrote (`curate.scoring.difficulty`).
"""

from __future__ import annotations

import numpy as np

from curate.errors import CurateError
from curate.scoring.difficulty import SCORER_PREFIX
from curate.selectors.base import Pool, Selection, Selector, register
from curate.store import Store


def difficulty_scorers(store: Store) -> list[str]:
    with store.connect() as con:
        rows = con.execute("SELECT DISTINCT scorer FROM scores WHERE scorer LIKE ? ORDER BY 1",
                           [f"{SCORER_PREFIX}:%"]).fetchall()
    return [name for (name,) in rows]


def default_scorer(store: Store) -> str:
    """The one difficulty scorer in the store; an error naming the choices when there are none or several."""
    names = difficulty_scorers(store)
    if len(names) != 1:
        found = ", ".join(names) if names else "none (run `curate score difficulty` first)"
        raise CurateError(f"pick the difficulty scores with --scorer; found: {found}")
    return names[0]


@register
class DifficultySelector(Selector):
    name = "difficulty"

    def __init__(self, scorer: str = f"{SCORER_PREFIX}:smollm2-135m", min_iters: int = 5,
                 keep_unsolved: bool = True, unsolved_first: bool = True):
        self.scorer = scorer
        self.min_iters = min_iters
        self.keep_unsolved = keep_unsolved
        self.unsolved_first = unsolved_first

    def select(self, pool: Pool, budget: int | None) -> Selection:
        table = pool.fetch(
            "SELECT p.pool_index, s.status, s.error, s.value, "
            "       CAST(s.details->>'solved' AS BOOLEAN) AS solved, "
            "       CAST(s.details->>'iterations' AS INTEGER) AS iterations, "
            "       CAST(s.details->>'max_iterations' AS INTEGER) AS max_iterations "
            "FROM pool p LEFT JOIN scores s ON s.sample_id = p.sample_id AND s.scorer = ? ORDER BY p.pool_index",
            [self.scorer])
        ids = pool.ids
        status = np.asarray(table["status"].to_pylist(), dtype=object)
        errors = table["error"].to_pylist()
        solved = np.asarray(table["solved"].fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
        iterations = np.asarray(table["iterations"].fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)
        caps = table["max_iterations"].to_pylist()
        values = np.asarray(table["value"].fill_null(np.nan).to_numpy(zero_copy_only=False), dtype=float)

        scored = status == "ok"
        unsolved = scored & ~solved
        hard = scored & solved & (iterations > self.min_iters)
        eligible = hard | (unsolved & self.keep_unsolved)

        # Rank: unsolved first (or last), then by iterations, descending; ties by sample id (pool order).
        group = np.where(unsolved, 0 if self.unsolved_first else 1, 1 if self.unsolved_first else 0)
        candidates = np.flatnonzero(eligible)
        order = candidates[np.lexsort((candidates, -iterations[candidates], group[candidates]))]
        limit = len(order) if budget is None else min(budget, len(order))
        kept, over = order[:limit], order[limit:]

        def why(i: int) -> str:
            if not scored[i]:
                return f"search failed: {errors[i]}" if status[i] == "failed" else f"no {self.scorer} score"
            if unsolved[i]:
                return f"unsolved within {caps[i]} iterations"
            return f"solved at iteration {iterations[i]} " + (">" if iterations[i] > self.min_iters else "<=") + \
                f" {self.min_iters}"

        dropped = [i for i in range(len(ids)) if not eligible[i]]
        dropped_reasons = [why(i) + (" (--drop-unsolved)" if unsolved[i] else "") for i in dropped]
        dropped += over.tolist()
        dropped_reasons += [f"over budget: {why(i)}" for i in over]
        return Selection(
            ids=ids[kept].tolist(), scores=[float(values[i]) for i in kept], reasons=[why(i) for i in kept],
            dropped_ids=ids[dropped].tolist(), dropped_reasons=dropped_reasons,
            counts={"eligible": int(eligible.sum()), "unsolved": int(unsolved.sum()), "hard_solved": int(hard.sum()),
                    "easy_solved": int((scored & solved & ~hard).sum()), "unscored": int((~scored).sum())})
