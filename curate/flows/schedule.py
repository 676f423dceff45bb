"""Schedules: serve a recipe's flow as a Prefect deployment with a cron or interval schedule.

`serve_recipe` blocks while serving: Prefect polls its API for scheduled runs and executes them in
this process (against PREFECT_API_URL when set, else Prefect's local API). `list_deployments` reads
what the API knows.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import curate.flows  # noqa: F401  (Prefect environment defaults)
from curate.config import load_recipe
from curate.errors import CurateError


def next_runs(cron: str | None, interval: float | None, count: int = 3) -> list[dt.datetime]:
    now = dt.datetime.now(dt.timezone.utc)
    if interval:
        return [now + dt.timedelta(seconds=interval * (k + 1)) for k in range(count)]
    import cronsim

    try:
        times = cronsim.CronSim(cron, now)
        return [next(times) for _ in range(count)]
    except cronsim.CronSimError as error:
        raise CurateError(f"--cron {cron!r}: {error}") from None


def deployment_name(recipe_path: str | Path, name: str | None) -> str:
    return name or load_recipe(recipe_path).name


def serve_recipe(recipe_path: str | Path, db: str, *, cron: str | None = None, interval: float | None = None,
                 name: str | None = None, runner: str = "local") -> None:
    from curate.flows.recipe import recipe_flow

    if bool(cron) == bool(interval):
        raise CurateError("give exactly one of --cron or --interval")
    recipe = load_recipe(recipe_path)   # validate before serving
    recipe_flow.serve(
        name=deployment_name(recipe_path, name),
        cron=cron, interval=dt.timedelta(seconds=interval) if interval else None,
        parameters={"recipe_path": str(recipe.path), "db": str(Path(db).resolve()), "runner": runner},
        description=f"curate recipe {recipe.name} ({recipe.path})", tags=["curate"],
        print_starting_message=False,
        limit=1,   # one run at a time: two runs of a recipe would race on the same store
    )


def list_deployments() -> list[dict]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.sorting import DeploymentSort

    async def read() -> list[dict]:
        async with get_client() as client:   # Prefect 3.8's client must send limit and sort explicitly
            deployments = await client.read_deployments(limit=200, sort=DeploymentSort.NAME_ASC)
            rows = []
            for d in deployments:
                schedules = [str(getattr(s.schedule, "cron", None) or getattr(s.schedule, "interval", ""))
                             for s in (d.schedules or [])]
                rows.append({"deployment": f"curate-recipe/{d.name}", "schedule": ", ".join(schedules),
                             "recipe": (d.parameters or {}).get("recipe_path", ""),
                             "store": (d.parameters or {}).get("db", ""), "paused": d.paused})
            return rows

    return asyncio.run(read())
