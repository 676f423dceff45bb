"""Prompt/completion pairs (e.g. T0 as released by self-instruct); a trailing <|endoftext|> is stripped."""

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

KEYS = {"prompt", "completion"}
END_OF_TEXT = "<|endoftext|>"


def adapt(record) -> Sample:
    record = require_object(record)
    prompt = get_str(record, "prompt")
    completion = get_str(record, "completion").rstrip()
    if completion.endswith(END_OF_TEXT):
        completion = completion[: -len(END_OF_TEXT)]
        if not completion.strip():
            raise FieldError("completion", f"is empty once {END_OF_TEXT} is removed")
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]
    return Sample(messages=check_conversation(messages, "prompt/completion"), meta=unmapped(record, KEYS))


def _plain_turns(prompt, completion) -> tuple[tuple[str, str], tuple[str, str]] | None:
    if type(prompt) is not str or type(completion) is not str or not prompt.strip():
        return None
    completion = completion.rstrip().removesuffix(END_OF_TEXT)
    return (USER_ASSISTANT, (prompt, completion)) if completion.strip() else None


FLAT = FlatForm(("prompt", "completion"), _plain_turns)
