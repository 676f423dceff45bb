"""The samples a scoring method reads, and how a conversation is shown to a judge."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from curate.selectors.base import validate_predicate
from curate.store import Store


@dataclass
class Targets:
    ids: list[str]
    messages: list[list[dict[str, str]]]

    def __len__(self) -> int:
        return len(self.ids)


def load_targets(store: Store, where: str | None = None, limit: int | None = None,
                 skip: set[str] | None = None) -> Targets:
    """Samples matching `where`, in id order, without those in `skip`, at most `limit` of them."""
    predicate = validate_predicate(store, where) if where else "TRUE"
    with store.connect() as con:
        ids = con.sql(f"SELECT sample_id FROM samples WHERE {predicate} ORDER BY sample_id").fetchnumpy()["sample_id"]
        ids = [sid for sid in ids.tolist() if not skip or sid not in skip][:limit]
        con.register("wanted", pa.table({"sample_id": pa.array(ids, pa.string()),
                                         "position": pa.array(range(len(ids)), pa.int64())}))
        messages = con.sql("SELECT s.messages FROM wanted w JOIN samples s USING (sample_id) ORDER BY w.position"
                           ).to_arrow_table()["messages"].to_pylist()
        con.unregister("wanted")
    return Targets(ids=ids, messages=messages)


def user_turns(messages: list[dict[str, str]]) -> list[tuple[str, str]]:
    """(instruction, response) per user turn; the response is the next assistant turn, "" if none.

    DEITA scores each round of a ShareGPT conversation this way (`ScorePipeline._load_sharegpt`).
    """
    turns = []
    for index, message in enumerate(messages):
        if message["role"] != "user":
            continue
        following = messages[index + 1] if index + 1 < len(messages) else None
        response = following["content"] if following is not None and following["role"] == "assistant" else ""
        turns.append((message["content"], response))
    return turns


ROLE_NAMES = {"system": "System", "user": "User", "assistant": "Assistant", "tool": "Tool"}


def render(messages: list[dict[str, str]], max_chars: int | None) -> str:
    """The conversation as one text excerpt for a judge, cut to `max_chars` (QuRating judges excerpts)."""
    text = "\n\n".join(f"{ROLE_NAMES.get(m['role'], m['role'])}: {m['content'].strip()}" for m in messages)
    return text if max_chars is None or len(text) <= max_chars else text[:max_chars]
