"""ShareGPT: {conversations: [{from, value}] or [{role, content}]}, optional system field."""

from __future__ import annotations

from collections.abc import Mapping

from curate.errors import FieldError
from curate.formats.base import Sample, canonical_role, check_conversation, get_list, get_str, require_object, unmapped

KEYS = {"conversations", "system"}


def adapt(record) -> Sample:
    record = require_object(record)
    turns = get_list(record, "conversations")
    system = get_str(record, "system", required=False)
    messages = [{"role": "system", "content": system}] if system else []
    for index, turn in enumerate(turns):
        where = f"conversations[{index}]"
        if not isinstance(turn, Mapping):
            raise FieldError(where, f"expected an object with from/value, got {type(turn).__name__}")
        if "from" in turn or "value" in turn:
            role_key, content_key = "from", "value"
        elif "role" in turn or "content" in turn:
            role_key, content_key = "role", "content"
        else:
            raise FieldError(where, f"expected from/value or role/content keys, got {sorted(turn)}")
        if role_key not in turn:
            raise FieldError(f"{where}.{role_key}", "missing")
        content = turn.get(content_key)
        if not isinstance(content, str):
            raise FieldError(f"{where}.{content_key}", "missing" if content is None else
                             f"expected a string, got {type(content).__name__}")
        messages.append({"role": canonical_role(turn[role_key], f"{where}.{role_key}"), "content": content})
    return Sample(messages=check_conversation(messages, "conversations"), meta=unmapped(record, KEYS))
