"""ZeroSearch rollouts: Search-R1's tags, with results written `Doc i: text`.

ZeroSearch trains against a simulated search engine (an LLM writing the documents), so its
documents are flagged simulated unless the record says otherwise: `search_mode` of `google` or
`wiki` (a real engine) or `simulate_sft`/`simulate_prompt`, or a boolean `simulated`. Records take
the Search-R1 shapes (see search_r1.py); gold answers also come from `golden_answers`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from curate.errors import FieldError
from curate.formats import search_r1
from curate.formats.base import Sample
from curate.trajectories.parse import ZEROSEARCH
from curate.trajectories.record import trajectory_sample

SEARCH_MODES = {"google": False, "wiki": False, "simulate_sft": True, "simulate_prompt": True}
_DOCS = re.compile(r"<information>\s*Doc \d+: ")


def matches(record: Mapping) -> bool:
    """Search-R1's keys and tags, with `Doc i: text` results or a `search_mode` field."""
    if not search_r1.matches(record):
        return False
    return "search_mode" in record or bool(_DOCS.search(search_r1.response_text(record)))


def _simulated(record: Mapping) -> bool:
    if isinstance(record, Mapping) and record.get("simulated") is not None:
        if not isinstance(record["simulated"], bool):
            raise FieldError("simulated", f"expected true or false, got {record['simulated']!r}")
        return record["simulated"]
    mode = record.get("search_mode") if isinstance(record, Mapping) else None
    if mode is None:
        return True
    if mode not in SEARCH_MODES:
        raise FieldError("search_mode", f"expected one of {', '.join(SEARCH_MODES)}, got {mode!r}")
    return SEARCH_MODES[mode]


def adapt(record) -> Sample:
    return trajectory_sample(search_r1.read_rollout(record, ZEROSEARCH, simulated=_simulated(record)))
