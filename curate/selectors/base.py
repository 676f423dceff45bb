"""The selector interface: a Pool in, a Selection out, every decision recorded.

A selector follows scikit-learn's conventions: its parameters are the arguments of `__init__`,
stored as attributes of the same name, and `select` keeps no state between calls. It reads only the
signals it asks the Pool for, so scoring (expensive, cached in the store) stays separate from
selecting (cheap, re-runnable with other parameters over the same scores).

Selectors register by name with `@register`; third-party packages add theirs through the
`curate.selectors` entry-point group.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, ClassVar

import numpy as np
import orjson
import pyarrow as pa

from curate.errors import CurateError
from curate.store import Store
from curate.store.runs import start_run


@dataclass
class Pool:
    """The candidate samples of a selection, sorted by id, and access to their signals."""

    store: Store
    ids: np.ndarray                       # sample ids (str), sorted
    where: str | None = None

    @classmethod
    def from_store(cls, store: Store, where: str | None = None) -> Pool:
        predicate = validate_predicate(store, where) if where else "TRUE"
        with store.connect() as con:
            try:
                ids = con.execute(f"SELECT sample_id FROM samples WHERE {predicate} ORDER BY sample_id").fetchnumpy()
            except Exception as error:  # DuckDB raises several types for a bad predicate
                raise CurateError(f"--where {where!r}: {str(error).splitlines()[0]}") from error
        return cls(store=store, ids=np.asarray(ids["sample_id"], dtype=object), where=where)

    def __len__(self) -> int:
        return len(self.ids)

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> pa.Table:
        """Run `sql` with the pool available as table `pool(sample_id, pool_index)`."""
        with self.store.connect() as con:
            con.register("pool", pa.table({"sample_id": pa.array(self.ids, pa.string()),
                                           "pool_index": pa.array(np.arange(len(self.ids)), pa.int64())}))
            try:
                return con.sql(sql, params=list(params)).to_arrow_table()
            finally:
                con.unregister("pool")

    def scores(self, scorer: str) -> np.ndarray:
        """One float per pool sample (NaN where the scorer has no successful value)."""
        table = self.fetch("SELECT p.pool_index, s.value FROM pool p JOIN scores s USING (sample_id) "
                           "WHERE s.scorer = ? AND s.status = 'ok' AND s.value IS NOT NULL", [scorer])
        values = np.full(len(self.ids), np.nan)
        values[table["pool_index"].to_numpy()] = table["value"].to_numpy()
        return values

    def embeddings(self, model: str | None = None, view: str = "prompt") -> np.ndarray:
        """(len(pool), d) float32, L2-normalised, row i for ids[i] (computed by `curate embed`)."""
        from curate.models.embed import load_embeddings

        return load_embeddings(self.store, self.ids, model, view)

    def labels(self, origin: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Pairs (pool index, label) as two arrays, sorted by pool index then label."""
        table = self.fetch(
            "SELECT DISTINCT p.pool_index, l.label FROM pool p JOIN labels l USING (sample_id) "
            "WHERE ? IS NULL OR l.origin = ? ORDER BY 1, 2", [origin, origin])
        return table["pool_index"].to_numpy(), np.asarray(table["label"].to_pylist(), dtype=object)


def validate_predicate(store: Store, where: str) -> str:
    """Accept a SQL predicate over `samples` only if it is one expression, not extra statements."""
    with store.connect() as con:
        statements = con.extract_statements(f"SELECT 1 FROM samples WHERE ({where})")
    if len(statements) != 1:
        raise CurateError(f"--where {where!r}: must be a single SQL predicate over samples")
    return f"({where})"


@dataclass
class Selection:
    """What a selector decided: kept ids in order, with their score or gain and why; drops too."""

    ids: list[str]
    scores: list[float | None]
    reasons: list[str]
    details: list[dict[str, Any] | None] | None = None
    dropped_ids: list[str] = field(default_factory=list)
    dropped_reasons: list[str] = field(default_factory=list)
    dropped_details: list[dict[str, Any] | None] | None = None
    counts: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (len(self.ids) == len(self.scores) == len(self.reasons)):
            raise ValueError("ids, scores and reasons must have the same length")

    def table(self, run_id: str) -> pa.Table:
        def json_column(values, n):
            values = values if values is not None else [None] * n
            return pa.array([orjson.dumps(v).decode() if v is not None else None for v in values], pa.string())

        kept, dropped = len(self.ids), len(self.dropped_ids)
        return pa.table({
            "run_id": pa.repeat(pa.scalar(run_id), kept + dropped),
            "sample_id": pa.array(list(self.ids) + list(self.dropped_ids), pa.string()),
            "selected": pa.array([True] * kept + [False] * dropped),
            "rank": pa.array(list(range(1, kept + 1)) + [None] * dropped, pa.int32()),
            "score": pa.array(list(self.scores) + [None] * dropped, pa.float64()),
            "reason": pa.array(list(self.reasons) + list(self.dropped_reasons), pa.string()),
            "details": pa.concat_arrays([json_column(self.details, kept),
                                         json_column(self.dropped_details, dropped)]),
        })


class Selector:
    """Base class: subclasses set `name` and implement `select(pool, budget)`."""

    name: ClassVar[str]

    def get_params(self) -> dict[str, Any]:
        signature = inspect.signature(type(self).__init__)
        return {p: getattr(self, p) for p in signature.parameters if p != "self"}

    def select(self, pool: Pool, budget: int | None) -> Selection:
        raise NotImplementedError


REGISTRY: dict[str, type[Selector]] = {}


def register(cls: type[Selector]) -> type[Selector]:
    REGISTRY[cls.name] = cls
    return cls


def get_selector(name: str) -> type[Selector]:
    if name not in REGISTRY:
        for entry in entry_points(group="curate.selectors"):
            if entry.name == name:
                register(entry.load())
    if name not in REGISTRY:
        raise CurateError(f"unknown selector {name!r}; available: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def run_selection(store: Store, selector: Selector, pool: Pool, budget: int | None, *,
                  recipe: str | None = None, extra_params: dict[str, Any] | None = None,
                  flow_run_id: str | None = None) -> str:
    """Select from `pool`, record the run and every decision, and return the run id."""
    params = {"selector": selector.name, **selector.get_params(), "budget": budget, "where": pool.where,
              **(extra_params or {})}
    with start_run(store, f"select:{selector.name}", params, recipe=recipe, flow_run_id=flow_run_id) as run:
        selection = selector.select(pool, budget)
        run.counts.update({"pool": len(pool), "selected": len(selection.ids),
                           "dropped": len(selection.dropped_ids), **selection.counts})
        with store.transaction() as con:
            con.register("run_selection", selection.table(run.run_id))
            con.execute("INSERT INTO selections BY NAME SELECT * FROM run_selection")
            con.unregister("run_selection")
    return run.run_id
