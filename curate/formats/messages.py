"""OpenAI/Tulu chat: {messages: [{role, content}]}; content may be a list of text parts."""

from __future__ import annotations

from collections.abc import Mapping

from curate.errors import FieldError
from curate.formats.base import (
    ROLES,
    FlatForm,
    Sample,
    canonical_role,
    check_conversation,
    get_list,
    plain_conversation,
    require_object,
    unmapped,
)

KEYS = {"messages"}


def _text(content, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for index, part in enumerate(content):
            if isinstance(part, Mapping) and part.get("type") == "text" and isinstance(part.get("text"), str):
                parts.append(part["text"])
            else:
                raise FieldError(f"{where}[{index}]", "only text parts ({type: text, text}) are supported")
        return "".join(parts)
    raise FieldError(where, "missing" if content is None else f"expected a string, got {type(content).__name__}")


def adapt(record, field: str = "messages") -> Sample:
    record = require_object(record)
    messages = []
    for index, message in enumerate(get_list(record, field)):
        where = f"{field}[{index}]"
        if not isinstance(message, Mapping):
            raise FieldError(where, f"expected an object with role/content, got {type(message).__name__}")
        if "role" not in message:
            raise FieldError(f"{where}.role", "missing")
        messages.append({
            "role": canonical_role(message["role"], f"{where}.role"),
            "content": _text(message.get("content"), f"{where}.content"),
        })
    return Sample(messages=check_conversation(messages, field), meta=unmapped(record, {field}))


_ROLE_CONTENT = {"role", "content"}


def _plain_turns(messages) -> tuple[list[str], list[str]] | None:
    """A list of {role, content} objects with canonical roles and string contents that passes the
    conversation checks; anything else (aliases, text parts, other keys, a failing check) is None."""
    if type(messages) is not list:
        return None
    for message in messages:
        if type(message) is not dict or message.keys() != _ROLE_CONTENT or type(message["content"]) is not str \
                or message["role"] not in ROLES:
            return None
    return plain_conversation(messages)


FLAT = FlatForm(("messages",), _plain_turns)
