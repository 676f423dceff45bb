"""Recipe step `select`: any registered selector; an unchanged step reuses its earlier run."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from pydantic import Field

from curate.errors import CurateError
from curate.flows.steps.base import StepContext, StepParams, StepResult, step
from curate.store import Store


class SelectParams(StepParams):
    name: str = Field(description="name of this selection in the recipe (output.emit refers to it)")
    selector: str = Field(description="a registered selector: random, mig, kmeans, quality, deita, ...")
    budget: int | None = Field(None, ge=1)
    where: str | None = None
    params: dict[str, Any] = Field(default_factory=dict, description="the selector's parameters")
    reuse: bool = Field(True, description="reuse an earlier run with the same parameters, pool and signals")


def _signals_fingerprint(store: Store, pool_ids) -> str:
    """Changes whenever the pool or any stored signal changes (new scores, labels, embeddings)."""
    digest = hashlib.sha256("\n".join(pool_ids).encode())
    with store.connect() as con:
        for table in ("labels", "scores", "embeddings"):
            exists = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?",
                                 [table]).fetchone()[0]
            if exists:
                digest.update(orjson.dumps(con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]))
        for (stamp,) in con.execute("SELECT max(created_at) FROM scores UNION ALL "
                                    "SELECT max(created_at) FROM embeddings").fetchall():
            digest.update(str(stamp).encode())
    return digest.hexdigest()[:16]


@step("select", SelectParams)
def select_step(ctx: StepContext, params: SelectParams) -> StepResult:
    from curate.selectors import Pool, get_selector, run_selection
    from curate.store.runs import params_hash

    selector_class = get_selector(params.selector)
    try:
        selector = selector_class(**params.params)
    except TypeError as error:
        raise CurateError(f"select step {params.name!r}: {error}") from None
    pool = Pool.from_store(ctx.store, params.where)
    fingerprint = _signals_fingerprint(ctx.store, pool.ids.tolist())
    extra = {"recipe_step": params.name, "inputs": fingerprint}
    full = {"selector": selector.name, **selector.get_params(), "budget": params.budget, "where": pool.where, **extra}
    if params.reuse:
        with ctx.store.connect() as con:
            row = con.execute("SELECT run_id, counts FROM runs WHERE params_hash = ? AND status = 'completed' "
                              "ORDER BY started_at DESC LIMIT 1", [params_hash(full)]).fetchone()
        if row:
            ctx.log(f"select {params.name}: inputs and parameters unchanged, reusing run {row[0]}")
            return StepResult(counts=orjson.loads(row[1]) if row[1] else {}, run_id=row[0], name=params.name,
                              reused=True)
    run_id = run_selection(ctx.store, selector, pool, params.budget, recipe=ctx.recipe.name, extra_params=extra,
                           flow_run_id=ctx.flow_run_id)
    with ctx.store.connect() as con:
        counts = orjson.loads(con.execute("SELECT counts FROM runs WHERE run_id = ?", [run_id]).fetchone()[0])
        reasons = dict(con.execute("SELECT reason, count(*) FROM selections WHERE run_id = ? AND NOT selected "
                                   "GROUP BY 1", [run_id]).fetchall())
    return StepResult(counts=counts, reasons=reasons, run_id=run_id, name=params.name)
