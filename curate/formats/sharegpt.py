"""ShareGPT: {conversations: [{from, value}] or [{role, content}]}, optional system field."""

from __future__ import annotations

from collections.abc import Mapping

from curate.errors import FieldError
from curate.formats.base import (
    ROLE_ALIASES,
    FlatForm,
    Sample,
    canonical_role,
    check_conversation,
    get_list,
    get_str,
    plain_conversation,
    require_object,
    unmapped,
)

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


_TURN_KEYS = {frozenset({"from", "value"}): ("from", "value"), frozenset({"role", "content"}): ("role", "content")}


def _plain_turns(conversations, system) -> tuple[list[str], list[str]] | None:
    """Turns of exactly {from, value} or {role, content}, with a role spelt as in ROLE_ALIASES and a
    string content, that pass the conversation checks; anything else is None."""
    if type(conversations) is not list or system is not None and type(system) is not str:
        return None
    messages = [{"role": "system", "content": system}] if system else []
    for turn in conversations:
        keys = _TURN_KEYS.get(frozenset(turn)) if type(turn) is dict else None
        if keys is None:
            return None
        role, content = turn[keys[0]], turn[keys[1]]
        if type(role) is not str or type(content) is not str or role not in ROLE_ALIASES:
            return None
        messages.append({"role": ROLE_ALIASES[role], "content": content})
    return plain_conversation(messages)


FLAT = FlatForm(("conversations", "system"), _plain_turns)
