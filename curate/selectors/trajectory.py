"""SimpleDeepSearcher's multi-criteria curation of search trajectories, as a selector.

Reference: RUCAIBox/SimpleDeepSearcher, process_data/repsonse_curation/response_curation.py
(`calculate_acc_ratios`: `is_valid_solution`, `sort_solution`, `sort_query`, the 80% drop of questions
every rollout solved) and format_filter.py (`\\boxed{` before `</think>`, Chinese, 3,000 words, EM).

Response side, each a criterion (`criteria` picks a subset; defaults are SimpleDeepSearcher's values):
- correct: cover-EM = 1 and EM = 1 (its `acc`, and format_filter's `ans_em_error`);
- markers: well-formed search markers (its `detect_variant_markers` / `is_valid_history`: no
  malformed or unclosed markers, no results without a search, no results the policy wrote);
- think_close: no `</think>` beyond one per think block opened (`is_valid_history` allows exactly one);
- first_segment, longest_segment: the first and the longest assistant turn under 300 words;
- fillers: "Alternatively", "hmm", "wait" each at most 3 times in any assistant turn;
- repetition: no word trigram over 30% of all trigrams (`detect_repeat`);
- unique_documents: unique documents per search above 0.95 of top-k (its `url_per_search > 9.5`
  with top-k 10), so at least one search;
- boxed_before_think: no `\\boxed{` before the first `</think>`;
- cjk: no CJK characters in the policy's own text;
- length: at most 3,000 words.
Per question the valid trajectory with the fewest searches is the candidate (`sort_solution`).

Question side: questions are grouped by their exact text (so a duplicated question yields one
trajectory); a question every rollout solved (cover-EM) is dropped with probability 0.8, drawn from
`random.Random(seed)` once per such question in question order, as SimpleDeepSearcher draws; the rest
are ranked by pass rate ascending, then by the fewest searches a correct rollout needed, descending
(`sort_query`), and the first `budget` questions kept.

Every trajectory of the pool gets a decision; a dropped one says why, with every failed criterion
and its measured value in its details.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

import numpy as np
import pyarrow as pa

from curate.errors import CurateError
from curate.selectors.base import Pool, Selection, Selector, register

CRITERIA = ("correct", "markers", "think_close", "first_segment", "longest_segment", "fillers", "repetition",
            "unique_documents", "boxed_before_think", "cjk", "length")
MARKER_ERRORS = ("unclosed_query", "unclosed_documents", "documents_without_query", "fabricated_documents",
                 "empty_query", "malformed_marker")
NO_CORRECT_SEARCHES = 100      # SimpleDeepSearcher's min_search for a question no rollout solved

_COLUMNS = """
SELECT t.sample_id, t.question, t.searches, t.em, t.cover_em, t.extra_think_closes, t.first_segment_words,
       t.longest_segment_words, greatest(t.max_alternatively, t.max_hmm, t.max_wait) AS max_fillers,
       t.max_trigram_share, t.unique_documents, t.top_k, t.boxed_before_think_end, t.cjk_outside_documents,
       t.response_words, list_filter(t.format_errors, lambda e: list_contains(?, e)) AS marker_errors
FROM pool p JOIN trajectories t USING (sample_id)
ORDER BY p.pool_index
"""


@register
class TrajectorySelector(Selector):
    name = "trajectory"

    def __init__(self, criteria: tuple[str, ...] | list[str] = CRITERIA, max_extra_think_closes: int = 0,
                 segment_word_limit: int = 300, max_fillers: int = 3, max_trigram_share: float = 0.3,
                 min_documents_per_search: float = 0.95, top_k: int | None = None, max_words: int = 3000,
                 all_solved_drop: float = 0.8, seed: int = 42):
        self.criteria = criteria
        self.max_extra_think_closes = max_extra_think_closes
        self.segment_word_limit = segment_word_limit
        self.max_fillers = max_fillers
        self.max_trigram_share = max_trigram_share
        self.min_documents_per_search = min_documents_per_search
        self.top_k = top_k
        self.max_words = max_words
        self.all_solved_drop = all_solved_drop
        self.seed = seed

    # -- response side ------------------------------------------------------------------------

    def failures(self, columns: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """criterion -> (failed mask, the value measured), for each chosen criterion."""
        unknown = set(self.criteria) - set(CRITERIA)
        if unknown:
            raise CurateError(f"unknown criteria {sorted(unknown)}; choose from {', '.join(CRITERIA)}")
        c = columns
        em, cover = np.nan_to_num(c["em"], nan=0.0), np.nan_to_num(c["cover_em"], nan=0.0)
        top_k = np.full(len(em), self.top_k) if self.top_k is not None else c["top_k"]
        searches = c["searches"]
        per_search = np.divide(c["unique_documents"], searches, out=np.zeros(len(em)), where=searches > 0)
        marker_count = np.array([len(errors) for errors in c["marker_errors"]])
        tests = {
            "correct": (~((em == 1) & (cover == 1)), np.stack([c["em"], c["cover_em"]], axis=1)),
            "markers": (marker_count > 0, c["marker_errors"]),
            "think_close": (c["extra_think_closes"] > self.max_extra_think_closes, c["extra_think_closes"]),
            "first_segment": (c["first_segment_words"] >= self.segment_word_limit, c["first_segment_words"]),
            "longest_segment": (c["longest_segment_words"] >= self.segment_word_limit, c["longest_segment_words"]),
            "fillers": (c["max_fillers"] > self.max_fillers, c["max_fillers"]),
            "repetition": (c["max_trigram_share"] > self.max_trigram_share, c["max_trigram_share"]),
            "unique_documents": ((searches == 0) | (per_search <= self.min_documents_per_search * top_k),
                                 per_search),
            "boxed_before_think": (c["boxed_before_think_end"] > 0, c["boxed_before_think_end"]),
            "cjk": (c["cjk_outside_documents"] > 0, c["cjk_outside_documents"]),
            "length": (c["response_words"] > self.max_words, c["response_words"]),
        }
        return {name: tests[name] for name in CRITERIA if name in self.criteria}

    # -- selection ----------------------------------------------------------------------------

    def select(self, pool: Pool, budget: int | None) -> Selection:
        table = pool.fetch(_COLUMNS, [list(MARKER_ERRORS)])
        columns = {name: _numpy(table[name]) for name in table.column_names}
        ids, questions = table["sample_id"].to_pylist(), table["question"].to_pylist()
        failures = self.failures(columns)
        failed = np.zeros(len(ids), dtype=bool)
        for mask, _ in failures.values():
            failed |= mask
        searches, cover = columns["searches"], np.nan_to_num(columns["cover_em"], nan=0.0)

        rollouts: dict[str, list[int]] = defaultdict(list)
        for row, question in enumerate(questions):
            rollouts[question].append(row)
        rng = random.Random(self.seed)
        candidates, decided = [], {}          # decided: row -> (reason, details) for rows dropped here
        for question in sorted(rollouts):
            rows = rollouts[question]
            pass_rate = float(np.mean(cover[rows] == 1))
            solved = [r for r in rows if cover[r] == 1]
            min_search = int(min(searches[r] for r in solved)) if solved else NO_CORRECT_SEARCHES
            valid = sorted((r for r in rows if not failed[r]), key=lambda r: (searches[r], ids[r]))
            # drawn for every all-solved question, valid rollout or not, as SimpleDeepSearcher draws
            drop_solved = pass_rate == 1 and rng.random() < self.all_solved_drop
            context = {"question": question, "rollouts": len(rows), "pass_rate": pass_rate}
            for r in valid[1:]:
                decided[r] = ("a valid rollout of this question with no more searches was chosen",
                              {**context, "searches": int(searches[r]), "kept_candidate": ids[valid[0]]})
            if not valid:
                continue
            if drop_solved:
                reason = f"every rollout of this question is correct: dropped with probability {self.all_solved_drop}"
                decided[valid[0]] = (reason, context)
            else:
                candidates.append((pass_rate, -min_search, question, valid[0], context))
        candidates.sort(key=lambda item: item[:3])
        kept = candidates if budget is None else candidates[:budget]
        for rank, (_, _, _, row, context) in enumerate(candidates[len(kept):], start=len(kept) + 1):
            decided[row] = (f"over budget: question ranked {rank}, budget {budget}", context)

        dropped_ids, dropped_reasons, dropped_details = [], [], []
        for row in range(len(ids)):
            if failed[row]:
                names = [name for name, (mask, _) in failures.items() if mask[row]]
                dropped_ids.append(ids[row])
                dropped_reasons.append("failed: " + ", ".join(names))
                dropped_details.append(
                    {"failed": names, "values": {name: _plain(failures[name][1][row]) for name in names}})
            elif row in decided:
                dropped_ids.append(ids[row])
                dropped_reasons.append(decided[row][0])
                dropped_details.append(decided[row][1])
        trajectory_ids = set(ids)
        others = [sample_id for sample_id in pool.ids if sample_id not in trajectory_ids]
        kept_rows = [item[3] for item in kept]
        selection = Selection(
            ids=[ids[r] for r in kept_rows],
            scores=[item[0] for item in kept],
            reasons=[f"fewest searches ({int(searches[r])}) of the valid rollouts of its question" for r in kept_rows],
            details=[{**item[4], "searches": int(searches[item[3]])} for item in kept],
            dropped_ids=dropped_ids + others,
            dropped_reasons=dropped_reasons + ["not a trajectory (no trajectories row)"] * len(others),
            dropped_details=dropped_details + [None] * len(others),
            counts={
                "trajectories": len(ids), "questions": len(rollouts), "valid": int((~failed).sum()),
                "failed": {name: int(mask.sum()) for name, (mask, _) in failures.items()},
                "dropped_all_solved": sum(1 for reason, _ in decided.values() if reason.startswith("every rollout")),
            },
        )
        return selection


def _numpy(column: pa.ChunkedArray) -> Any:
    """A column as numpy (numbers; NULL as NaN) or as a Python list (strings, lists)."""
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        values = column.to_numpy(zero_copy_only=False)
        return values.astype(float) if column.null_count else values
    return column.to_pylist()


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and np.isnan(value):
        return None
    return value
