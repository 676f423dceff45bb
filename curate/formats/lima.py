"""LIMA: {conversations: [str, str, ...]} alternating user and assistant, user first."""

from __future__ import annotations

from curate.errors import FieldError
from curate.formats.base import (
    FlatForm,
    Sample,
    check_conversation,
    get_list,
    plain_conversation,
    require_object,
    unmapped,
)

KEYS = {"conversations"}


def adapt(record) -> Sample:
    record = require_object(record)
    turns = get_list(record, "conversations")
    messages = []
    for index, text in enumerate(turns):
        if not isinstance(text, str):
            raise FieldError(f"conversations[{index}]", f"expected a string, got {type(text).__name__}")
        messages.append({"role": "user" if index % 2 == 0 else "assistant", "content": text})
    return Sample(messages=check_conversation(messages, "conversations"), meta=unmapped(record, KEYS))


def _plain_turns(conversations) -> tuple[list[str], list[str]] | None:
    if type(conversations) is not list or any(type(text) is not str for text in conversations):
        return None
    return plain_conversation([{"role": "user" if index % 2 == 0 else "assistant", "content": text}
                               for index, text in enumerate(conversations)])


FLAT = FlatForm(("conversations",), _plain_turns)
