"""LLM-judged quality scores, each faithful to its reference implementation.

- `deita`: DEITA's complexity and quality scorers (expected grade 1..6 from log-probs, per turn).
- `rubric`: a 1–10 grade on one criterion (QuRating's individual templates), from log-probs or votes.
- `pairwise`: QuRating's pairwise judgments, both orders, fitted into Bradley–Terry ratings.

Each method writes to `scores` through `curate.scoring.write_scores`, one scorer name per method,
criterion and judge model; a call that fails or cannot be read is a failure with its reason.
"""

from curate.scoring.quality.criteria import CRITERIA, Criterion, get_criterion
from curate.scoring.quality.deita import score_deita
from curate.scoring.quality.pairwise import fit_ratings, judge
from curate.scoring.quality.rubric import score_rubric
from curate.scoring.quality.targets import Targets, load_targets

METHODS = ("deita", "rubric", "pairwise")

__all__ = ["CRITERIA", "METHODS", "Criterion", "Targets", "fit_ratings", "get_criterion", "judge",
           "load_targets", "score_deita", "score_rubric"]
