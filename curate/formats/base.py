"""The canonical Sample, and the rules every dialect adapter follows.

An adapter is a function `record -> Sample` that either maps the record completely or raises
`FieldError(field, reason)`. It never guesses: a missing or mistyped field is an error that names
the field, and the ingest puts that row in quarantine.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from curate.errors import FieldError

ROLES = ("system", "user", "assistant", "tool")
KINDS = ("instruction", "trajectory", "synthetic")

# Role spellings seen in the wild, mapped to the canonical four.
ROLE_ALIASES = {
    "system": "system",
    "user": "user", "human": "user", "prompter": "user", "instruction": "user", "question": "user",
    "assistant": "assistant", "gpt": "assistant", "bot": "assistant", "model": "assistant",
    "chatgpt": "assistant", "answer": "assistant",
    "tool": "tool", "function": "tool", "observation": "tool", "ipython": "tool",
}


@dataclass
class Sample:
    """One training example in canonical form, plus the signals its record carried."""

    messages: list[dict[str, str]]
    kind: str = "instruction"
    meta: dict[str, Any] = field(default_factory=dict)
    gold_answer: str | None = None
    labels: list[tuple[str, str]] = field(default_factory=list)              # (label, origin)
    scores: list[tuple[str, float, dict | None]] = field(default_factory=list)  # (scorer, value, details)
    # Rows for other tables keyed by this sample (e.g. trajectories): table -> rows without sample_id.
    related: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def sample_id(self) -> str:
        return sample_id(self.messages)


@dataclass(frozen=True)
class FlatForm:
    """A dialect's plain records, mapped from their field values alone (ingest's fast path).

    A record is a candidate when it is a JSON object with none of the `reserved` keys (fields that
    only `adapt` handles, such as alpaca's history). `turns(*values)` (its `fields` values as
    parsed, in order, None where absent) gives the roles and contents of its turns exactly as `adapt`
    would, or None when the record is not plain (a field of another type or empty, say); its other
    keys are its meta, as `adapt` keeps them. A record that is not plain goes through `adapt`
    itself, as does every one that is not a candidate. Tests hold the two to the same result, row
    for row.
    """

    fields: tuple[str, ...]
    turns: Callable[..., tuple[Sequence[str], Sequence[str]] | None]
    reserved: frozenset[str] = frozenset()


USER_ASSISTANT = ("user", "assistant")   # the roles of a one-exchange record (flat forms return this tuple)


def sample_id(messages: list[dict[str, str]]) -> str:
    """Stable id of a conversation: sha256 of its roles and NFC-normalised, stripped contents.

    Whitespace around a turn and Unicode composition do not change the id, so the same sample
    from two sources, or re-ingested, maps to one row. Each turn is length-prefixed, so no content
    can forge a turn boundary.
    """
    return turns_id([message["role"] for message in messages], [message["content"] for message in messages])


def turns_id(roles: Sequence[str], contents: Sequence[str]) -> str:
    """`sample_id` of the conversation given as its roles and contents (ingest's fast path calls it
    once per row, so it is written for speed)."""
    parts = []
    for role, content in zip(roles, contents):
        content = content.strip()
        if not content.isascii() and not unicodedata.is_normalized("NFC", content):
            content = unicodedata.normalize("NFC", content).strip()
        parts.append(f"{role}:{len(content)}:{content}")
    return hashlib.sha256("".join(parts).encode()).hexdigest()[:32]


def pair_id(first_role: str, second_role: str) -> Callable[[str, str], str]:
    """`turns_id` of two-turn conversations with these roles, as a function of the two contents: the
    flat path's per-row call, a third faster than turns_id where both contents are ASCII (the rest
    go to turns_id itself)."""
    sha256, roles = hashlib.sha256, (first_role, second_role)

    def of(first: str, second: str) -> str:
        first, second = first.strip(), second.strip()
        if first.isascii() and second.isascii():
            payload = f"{first_role}:{len(first)}:{first}{second_role}:{len(second)}:{second}"
            return sha256(payload.encode()).hexdigest()[:32]
        return turns_id(roles, (first, second))

    return of


# -- helpers adapters share ---------------------------------------------------------------------


def require_object(record: Any) -> Mapping[str, Any]:
    if not isinstance(record, Mapping):
        raise FieldError(None, f"record is a {type(record).__name__}, expected a JSON object")
    return record


def get_str(record: Mapping[str, Any], key: str, *, required: bool = True, allow_empty: bool = False) -> str | None:
    """A string field; None only when optional and absent (or null)."""
    value = record.get(key)
    if value is None:
        if required:
            raise FieldError(key, "missing" if key not in record else "is null")
        return None
    if not isinstance(value, str):
        raise FieldError(key, f"expected a string, got {type(value).__name__}")
    if not allow_empty and required and not value.strip():
        raise FieldError(key, "is empty")
    return value


def get_list(record: Mapping[str, Any], key: str) -> list:
    value = record.get(key)
    if value is None:
        raise FieldError(key, "missing" if key not in record else "is null")
    if not isinstance(value, list):
        raise FieldError(key, f"expected a list, got {type(value).__name__}")
    if not value:
        raise FieldError(key, "is an empty list")
    return value


def canonical_role(raw: Any, where: str) -> str:
    if not isinstance(raw, str):
        raise FieldError(where, f"role must be a string, got {type(raw).__name__}")
    role = ROLE_ALIASES.get(raw.strip().lower())
    if role is None:
        raise FieldError(where, f"unknown role {raw!r}")
    return role


def check_conversation(messages: list[dict[str, str]], where: str) -> list[dict[str, str]]:
    """The checks every conversation passes: a user turn, then an assistant turn with content.

    Empty turns are errors, except an empty system prompt, which is dropped.
    """
    kept = []
    for index, message in enumerate(messages):
        if not message["content"].strip():
            if message["role"] == "system":
                continue
            raise FieldError(f"{where}[{index}].content", f"empty {message['role']} turn")
        kept.append(message)
    roles = [m["role"] for m in kept]
    if "user" not in roles:
        raise FieldError(where, "no user turn")
    if "assistant" not in roles:
        raise FieldError(where, "no assistant turn")
    if roles.index("assistant") < roles.index("user"):
        raise FieldError(where, "the first assistant turn comes before any user turn")
    return kept


def unmapped(record: Mapping[str, Any], mapped: set[str]) -> dict[str, Any]:
    """The record's fields that the adapter did not map, kept as the sample's meta."""
    return {k: v for k, v in record.items() if k not in mapped}


def plain_conversation(messages: list[dict[str, str]]) -> tuple[list[str], list[str]] | None:
    """Roles and contents of canonical messages that pass `check_conversation`, else None: the last
    step of a conversation dialect's flat form (`FlatForm.turns`)."""
    try:
        kept = check_conversation(messages, "")
    except FieldError:
        return None
    return [m["role"] for m in kept], [m["content"] for m in kept]
