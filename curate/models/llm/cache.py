"""A persistent response cache in front of any backend, kept in the store's `llm_cache` table.

Keyed by backend, model and the full request (sampling parameters and seed included), so a stage
that crashes resumes without repeating finished calls, and a re-run with the same inputs makes none.
Failures are stored with their error for the audit, and asked again on the next run.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import pyarrow as pa

from curate.models.llm.base import ChatRequest, ChatResponse, LLMBackend
from curate.store import Store
from curate.store.tables import replace_rows


class CachedBackend(LLMBackend):
    def __init__(self, backend: LLMBackend, store: Store):
        self.backend = backend
        self.store = store
        self.name = backend.name
        self.model = backend.model
        self.hits = 0
        self.calls = 0          # requests actually sent to the backend

    def lookup(self, keys: list[str]) -> dict[str, ChatResponse]:
        if not keys:
            return {}
        with self.store.connect() as con:
            con.register("wanted_keys", pa.table({"key": pa.array(keys, pa.string())}))
            rows = con.execute("SELECT c.key, c.response FROM wanted_keys w JOIN llm_cache c USING (key) "
                               "WHERE c.error IS NULL").fetchall()
            con.unregister("wanted_keys")
        return {key: ChatResponse.from_dict(orjson.loads(response), cached=True) for key, response in rows}

    def save(self, keys: list[str], requests: Sequence[ChatRequest], responses: list[ChatResponse]) -> None:
        if not keys:
            return
        table = pa.table({
            "key": pa.array(keys, pa.string()),
            "backend": pa.repeat(pa.scalar(self.name), len(keys)),
            "model": pa.repeat(pa.scalar(self.model), len(keys)),
            "request": pa.array([orjson.dumps(r.to_dict()).decode() for r in requests], pa.string()),
            "response": pa.array([orjson.dumps(r.to_dict()).decode() if r.ok else None for r in responses],
                                 pa.string()),
            "error": pa.array([r.error for r in responses], pa.string()),
        })
        with self.store.transaction() as con:
            con.register("new_cache", table)
            con.execute("CREATE OR REPLACE TEMP VIEW new_cache_rows AS "
                        "SELECT *, current_timestamp AS created_at FROM new_cache")
            replace_rows(con, "llm_cache", "new_cache_rows", ["key"])
            con.unregister("new_cache")

    def generate(self, requests: Sequence[ChatRequest]) -> list[ChatResponse]:
        keys = [r.cache_key(self.name, self.model) for r in requests]
        found = self.lookup(sorted(set(keys)))
        self.hits += sum(1 for k in keys if k in found)
        todo = {}   # key -> request, each distinct request asked once
        for key, request in zip(keys, requests):
            if key not in found:
                todo.setdefault(key, request)
        if todo:
            answers = self.backend.generate(list(todo.values()))
            self.calls += len(todo)
            self.save(list(todo), list(todo.values()), answers)
            found.update({k: a for k, a in zip(todo, answers)})
        return [found[k] for k in keys]

    def close(self) -> None:
        self.backend.close()
