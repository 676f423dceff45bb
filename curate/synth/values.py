"""What an executed graph returned: a final answer, or the reason it is rejected; numbers as text.

A final answer is a finite int, float or Fraction no larger than `max_abs`. Anything else is a
rejection with one of REJECT_VALUE reasons. The answer's text is what the problem's solver must
produce: whole numbers as integers, fractions as `a/b`, other floats rounded to two decimals (and
then the problem says so).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from curate.synth.sandbox import Opaque

ANSWER_DECIMALS = 2
REJECT_VALUE = ("none", "complex", "non_finite", "huge", "non_numeric")


@dataclass(frozen=True)
class Answer:
    text: str             # the gold final answer
    value: Any            # the executed value
    rounded: bool         # the text is the value rounded to ANSWER_DECIMALS places


def _is_whole(value: float) -> bool:
    return abs(value - round(value)) <= 1e-9 * max(1.0, abs(value))


def format_number(value: Any) -> str:
    """A number as a person writes it in a problem or a worked solution."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Fraction)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Fraction):
        return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"
    if not math.isfinite(value):
        return str(value)
    if _is_whole(value) and abs(value) < 1e15:
        return str(round(value))
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def answer_of(value: Any, *, max_abs: float = 1e9) -> Answer | str:
    """The final answer of an executed value, or the rejection reason (one of REJECT_VALUE)."""
    if value is None:
        return "none"
    if isinstance(value, complex):
        return "complex"
    if isinstance(value, Opaque):
        return "huge" if value.type in ("int", "Fraction") else "non_numeric"
    if isinstance(value, bool) or not isinstance(value, (int, float, Fraction)):
        return "non_numeric"
    if isinstance(value, float) and not math.isfinite(value):
        return "non_finite"
    if abs(value) > max_abs:
        return "huge"
    if isinstance(value, (int, Fraction)):
        return Answer(format_number(value), value, False)
    if _is_whole(value):
        return Answer(str(round(value)), value, False)
    rounded = round(value, ANSWER_DECIMALS)
    text = f"{rounded:.{ANSWER_DECIMALS}f}".rstrip("0").rstrip(".")
    return Answer("0" if text in ("-0", "") else text, value, abs(value - rounded) > 1e-9)
