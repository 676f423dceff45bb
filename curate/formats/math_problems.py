r"""MATH: {problem, solution} with the gold in the solution's last \boxed{}, or an explicit `answer`."""

from __future__ import annotations

from curate.answers import last_boxed
from curate.errors import FieldError
from curate.formats.base import Sample, check_conversation, get_str, require_object, unmapped

KEYS = {"problem", "solution", "answer"}


def adapt(record) -> Sample:
    record = require_object(record)
    problem = get_str(record, "problem")
    solution = get_str(record, "solution", required=False)
    answer = record.get("answer")
    if answer is not None and not isinstance(answer, (str, int, float)):
        raise FieldError("answer", f"expected a string or number, got {type(answer).__name__}")
    gold = str(answer).strip() if answer is not None and str(answer).strip() else None
    if gold is None:
        if solution is None:
            raise FieldError("solution", "missing, and no answer field either")
        gold = last_boxed(solution)
        if not gold:
            raise FieldError("solution", "no \\boxed{} final answer")
    messages = [{"role": "user", "content": problem}, {"role": "assistant", "content": solution or gold}]
    return Sample(messages=check_conversation(messages, "problem/solution"), gold_answer=gold,
                  meta=unmapped(record, KEYS))
