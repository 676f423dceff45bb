"""Helpers the synth tests share (no tests here): a sandbox pool, a row reader, a scripted LLM."""

from __future__ import annotations

from curate.models.llm import ChatResponse, Choice, LLMBackend
from curate.synth.library import install_starter
from curate.synth.sandbox import SandboxPool


def sandbox_pool():
    """A two-worker pool; a test module makes it its fixture: `pool = pytest.fixture(...)(sandbox_pool)`."""
    with SandboxPool(workers=2) as pool:
        yield pool


def rows(store, sql: str, params: list | None = None) -> list[dict]:
    with store.connect() as con:
        cursor = con.execute(sql, params or [])
        columns = [d[0] for d in cursor.description]
        return [dict(zip(columns, r)) for r in cursor.fetchall()]


def only(store, *names: str) -> None:
    """Install the starter library, then leave only `names` in it (the others marked merged away)."""
    install_starter(store)
    with store.transaction() as con:
        con.execute(f"UPDATE synth_functions SET merged_into = 'elsewhere' WHERE name NOT IN {names + ('',)!r}")


class Scripted(LLMBackend):
    """Answers each request with `reply(prompt, n)` -> n texts: a stand-in that pins a stage's logic, not a model."""

    name, model = "scripted", "test"

    def __init__(self, reply):
        self.reply = reply
        self.prompts: list[str] = []

    def generate(self, requests):
        out = []
        for request in requests:
            prompt = request.messages[-1]["content"]
            self.prompts.append(prompt)
            out.append(ChatResponse(choices=[Choice(text=t, finish_reason="stop") for t in self.reply(prompt, request.n)]))
        return out
