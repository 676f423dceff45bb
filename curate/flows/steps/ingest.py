"""Recipe step `ingest`: the recipe's sources into the store (unchanged ones skipped)."""

from __future__ import annotations

from collections import Counter

from pydantic import Field

from curate.errors import CurateError
from curate.flows.steps.base import StepContext, StepParams, StepResult, step


class IngestParams(StepParams):
    sources: list[str] | None = Field(None, description="names of the recipe's sources (default: all)")
    strict: bool = Field(False, description="fail the step if any row is quarantined")


@step("ingest", IngestParams, retries=2)
def ingest_step(ctx: StepContext, params: IngestParams) -> StepResult:
    from curate.ingest import ingest

    wanted = params.sources or [s.name for s in ctx.recipe.sources]
    unknown = set(wanted) - {s.name for s in ctx.recipe.sources}
    if unknown:
        raise CurateError(f"ingest step names unknown sources: {', '.join(sorted(unknown))}")
    result = StepResult()
    totals: Counter = Counter()
    for source in ctx.recipe.sources:
        if source.name not in wanted:
            continue
        reports = ingest(ctx.store, [ctx.recipe.resolve(source.path)], dialect=source.dialect, source=source.name,
                         mapping=source.fields or None, license=source.license, log=ctx.log)
        failed = [r for r in reports if r.status == "error"]
        if failed and source.optional:
            ctx.log(f"warning: optional source {source.name} skipped: {failed[0].error}")
            totals["sources_skipped"] += 1
            result.reasons[f"skipped {source.name}: unreachable"] = 1
            continue
        if failed:
            raise CurateError(f"source {source.name}: {failed[0].error}")
        for report in reports:
            totals["rows_read"] += report.counts.read
            totals["new"] += report.counts.new
            totals["duplicate"] += report.counts.duplicate
            totals["quarantined"] += report.counts.quarantined
            for reason, n in report.counts.reasons.items():
                result.reasons[reason] = result.reasons.get(reason, 0) + n
        totals["sources_ingested"] += 1
    if params.strict and totals["quarantined"]:
        raise CurateError(f"strict ingest: {totals['quarantined']} rows quarantined")
    result.counts = dict(totals)
    return result
