"""The recipe flow: one Prefect flow run per recipe run, one task per step.

    result = run_recipe("catalogs/demo.yaml", db="curate.duckdb")        # what `curate run` calls

Without `PREFECT_API_URL` the flow runs against Prefect's ephemeral local API; with it, against that
server (where schedules, the UI and artifacts live). `runner="ray"` runs the tasks with Prefect's Ray
task runner (prefect-ray) on a local or given Ray cluster.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import curate.flows  # noqa: F401  (Prefect environment defaults, before prefect is imported)
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from curate.config import Recipe, load_recipe
from curate.emit import emit
from curate.flows.steps import STEPS, StepContext, StepResult
from curate.store import Store
from curate.store.runs import start_run


@dataclass
class StepOutcome:
    index: int
    kind: str
    name: str | None
    seconds: float
    result: StepResult


@dataclass
class RecipeResult:
    recipe: str
    run_id: str
    flow_run_id: str | None
    steps: list[StepOutcome] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)     # select name -> emitted folder
    report: str | None = None


def _logger():
    try:
        return get_run_logger()
    except Exception:   # outside a run context (e.g. a Ray worker without one)
        import logging
        return logging.getLogger("curate")


@task(name="step")
def run_step(store_path: str, recipe_path: str, index: int, runner: str, ray_address: str | None,
             flow_run_id: str | None) -> tuple[StepResult, float]:
    recipe = load_recipe(recipe_path)
    spec = recipe.steps[index]
    logger = _logger()
    context = StepContext(store=Store(store_path), recipe=recipe, runner=runner, ray_address=ray_address,
                          flow_run_id=flow_run_id, log=logger.info)
    started = time.perf_counter()
    result = STEPS[spec.kind].run(context, spec.params)
    return result, time.perf_counter() - started


@task(name="emit", retries=2, retry_delay_seconds=2)
def emit_selection(store_path: str, run_id: str, folder: str, fmt: str) -> dict[str, Any]:
    return emit(Store(store_path), run_id, folder, fmt)


def _summary_markdown(recipe: Recipe, outcomes: list[StepOutcome], outputs: dict[str, str]) -> str:
    lines = [f"# Recipe `{recipe.name}`", "", f"Recipe file: `{recipe.path}`", "",
             "| # | step | name | seconds | counts | rejected or skipped |", "|---|---|---|---|---|---|"]
    for o in outcomes:
        counts = ", ".join(f"{k}: {v}" for k, v in o.result.counts.items())
        reasons = "; ".join(f"{k} ({v})" for k, v in sorted(o.result.reasons.items(), key=lambda kv: -kv[1])[:5])
        reused = " (reused)" if o.result.reused else ""
        lines.append(f"| {o.index} | {o.kind} | {o.name or ''}{reused} | {o.seconds:.1f} | {counts} | {reasons} |")
    if outputs:
        lines += ["", "## Outputs", ""] + [f"- `{name}`: `{folder}`" for name, folder in outputs.items()]
    return "\n".join(lines)


def _selection_rows(store: Store, run_id: str, limit: int = 20) -> list[dict[str, Any]]:
    with store.connect() as con:
        rows = con.execute(
            "SELECT sel.rank, sel.sample_id, sel.score, sel.reason, left(s.prompt, 80) AS prompt "
            "FROM selections sel JOIN samples s USING (sample_id) WHERE sel.run_id = ? AND sel.selected "
            "ORDER BY sel.rank LIMIT ?", [run_id, limit]).fetchall()
    return [dict(zip(["rank", "sample_id", "score", "reason", "prompt"], row)) for row in rows]


@flow(name="curate-recipe", log_prints=True)
def recipe_flow(recipe_path: str, db: str, runner: str = "local", ray_address: str | None = None) -> dict:
    from prefect.runtime import flow_run

    recipe = load_recipe(recipe_path)
    store = Store(db)
    flow_run_id = str(flow_run.id) if flow_run.id else None
    logger = _logger()
    result = None
    params = {"recipe": recipe.name, "path": str(recipe.path), "runner": runner,
              "recipe_text": Path(recipe.path).read_text()}
    with start_run(store, f"recipe:{recipe.name}", params, recipe=recipe.name, flow_run_id=flow_run_id) as run:
        result = RecipeResult(recipe=recipe.name, run_id=run.run_id, flow_run_id=flow_run_id)
        for index, spec in enumerate(recipe.steps):
            name = getattr(spec.params, "name", None)
            logger.info(f"step {index}: {spec.kind}" + (f" ({name})" if name else ""))
            step_task = run_step.with_options(name=f"{index}-{spec.kind}" + (f"-{name}" if name else ""),
                                              retries=STEPS[spec.kind].retries, retry_delay_seconds=2)
            step_result, seconds = step_task.submit(
                str(store.path), str(recipe.path), index, runner, ray_address, flow_run_id).result()
            result.steps.append(StepOutcome(index, spec.kind, name, seconds, step_result))

        selects = {o.name: o.result.run_id for o in result.steps if o.kind == "select"}
        wanted = recipe.output.emit if recipe.output.emit is not None else list(selects)
        out_root = Path(recipe.resolve(recipe.output.folder))
        for name in wanted:
            folder = out_root / name
            emit_selection.with_options(name=f"emit-{name}").submit(
                str(store.path), selects[name], str(folder), recipe.output.format).result()
            result.outputs[name] = str(folder)

        if recipe.output.report and selects:
            from curate.report import write_report

            last = selects[wanted[-1]] if wanted else list(selects.values())[-1]
            result.report = str(write_report(store, last, out_root / "report.html",
                                             compare=[selects[n] for n in wanted]))
        run.counts.update({"steps": len(result.steps), "outputs": result.outputs, "report": result.report,
                           "step_counts": {f"{o.index}-{o.kind}": o.result.counts for o in result.steps}})

    create_markdown_artifact(_summary_markdown(recipe, result.steps, result.outputs),
                             key=f"{_artifact_key(recipe.name)}-summary", description="curate recipe summary")
    for name, run_id in ((o.name, o.result.run_id) for o in result.steps if o.kind == "select"):
        rows = _selection_rows(store, run_id)
        if rows:
            create_table_artifact(rows, key=f"{_artifact_key(name)}-selection",
                                  description=f"top of selection {name} (run {run_id})")
    return asdict(result)


def _artifact_key(name: str) -> str:
    # Prefect artifact keys: lowercase letters, numbers and dashes only
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-") or "recipe"


def run_recipe(recipe_path: str | Path, db: str, runner: str = "local", ray_address: str | None = None) -> dict:
    """Validate the recipe, then run its flow (ephemeral API unless PREFECT_API_URL is set)."""
    recipe = load_recipe(recipe_path)   # fail on a bad recipe before Prefect starts
    flow_to_run = recipe_flow
    if runner == "ray":
        from prefect_ray import RayTaskRunner

        flow_to_run = recipe_flow.with_options(
            task_runner=RayTaskRunner(address=ray_address) if ray_address else RayTaskRunner(
                init_kwargs={"num_cpus": 2, "include_dashboard": False}))
    return flow_to_run(str(recipe.path), str(Path(db).resolve()), runner, ray_address)
