"""Alpaca: {instruction, input, output}, optionally system and history ([[user, assistant], ...])."""

from __future__ import annotations

from curate.errors import FieldError
from curate.formats.base import (
    USER_ASSISTANT,
    FlatForm,
    Sample,
    check_conversation,
    get_str,
    require_object,
    unmapped,
)

KEYS = {"instruction", "input", "output", "system", "history"}


def adapt(record) -> Sample:
    record = require_object(record)
    instruction = get_str(record, "instruction")
    extra_input = get_str(record, "input", required=False) or ""
    output = get_str(record, "output")
    system = get_str(record, "system", required=False)

    messages = [{"role": "system", "content": system}] if system else []
    history = record.get("history") or []
    if not isinstance(history, list):
        raise FieldError("history", f"expected a list of [user, assistant] pairs, got {type(history).__name__}")
    for index, pair in enumerate(history):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(t, str) for t in pair)):
            raise FieldError(f"history[{index}]", "expected a [user, assistant] pair of strings")
        messages += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]

    prompt = f"{instruction}\n\n{extra_input}" if extra_input.strip() else instruction
    messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]
    return Sample(messages=check_conversation(messages, "instruction/output"), meta=unmapped(record, KEYS))


def _plain_turns(instruction, extra_input, output) -> tuple[tuple[str, str], tuple[str, str]] | None:
    if type(instruction) is not str or type(output) is not str or extra_input is not None and type(extra_input) is not str:
        return None
    if not instruction.strip() or not output.strip():
        return None
    return USER_ASSISTANT, (f"{instruction}\n\n{extra_input}" if extra_input and extra_input.strip() else instruction, output)


# Records with a system prompt or history go through `adapt`.
FLAT = FlatForm(("instruction", "input", "output"), _plain_turns, reserved=frozenset({"system", "history"}))
