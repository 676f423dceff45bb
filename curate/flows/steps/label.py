"""Recipe step `label`: labels from a field, by embedding against a vocabulary, or by an LLM."""

from __future__ import annotations

from pydantic import Field

from curate.errors import CurateError
from curate.flows.steps.base import StepContext, StepParams, StepResult, llm_for, step


class LabelParams(StepParams):
    method: str = Field(description="field, embedding or llm (as `curate label METHOD`)")
    where: str | None = None
    origin: str | None = Field(None, description="default: the method's name (source for field --source)")
    label_vocab: str | None = Field(None, description="JSON list of labels (MIG's valid_tags.json)")
    path: str | None = Field(None, description="field: JSON path in the record's meta")
    source: str | None = Field(None, description="field: label by input: file or name")
    top_k: int = Field(5, ge=1, description="embedding: labels per sample")
    floor: float = Field(0.3, description="embedding: least cosine")
    model: str | None = Field(None, description="embedding model (embedding) or LLM (llm)")
    batch_size: int = Field(64, ge=1)
    backend: str = "transformers"
    base_url: str | None = None
    map_to_vocab: bool = False
    map_floor: float = 0.8
    label_model: str | None = None
    max_tokens: int = Field(256, ge=1)
    max_chars: int = Field(2000, ge=1)


@step("label", LabelParams, retries=1)
def label_step(ctx: StepContext, params: LabelParams) -> StepResult:
    from curate.labels import label_samples, load_vocab
    from curate.selectors import Pool

    vocab = load_vocab(ctx.recipe.resolve(params.label_vocab)) if params.label_vocab else None
    pool = Pool.from_store(ctx.store, params.where)
    options = params.model_dump(exclude={"method"})
    llm = None
    if params.method == "field":
        from curate.labels.field import from_meta, from_source, json_path

        if (params.path is None) == (params.source is None):
            raise CurateError("label step field: give one of path or source")
        origin = params.origin or ("field" if params.path else "source")
        chunks = (from_meta(pool, json_path(params.path), origin) if params.path
                  else from_source(pool, params.source, origin))
    elif params.method == "embedding":
        from curate.labels.embedding import by_embedding

        if vocab is None:
            raise CurateError("label step embedding: needs label_vocab")
        origin = params.origin or "embedding"
        chunks = by_embedding(pool, vocab, top_k=params.top_k, floor=params.floor, model=params.model,
                              origin=origin, batch_size=params.batch_size, progress=False)
    elif params.method == "llm":
        from curate.labels.llm import VocabularyMapper, by_llm
        from curate.models.embed import DEFAULT_MODEL

        if params.map_to_vocab and vocab is None:
            raise CurateError("label step llm: map_to_vocab needs label_vocab")
        origin = params.origin or "llm"
        mapper = (VocabularyMapper(vocab, params.map_floor, params.label_model or DEFAULT_MODEL, ctx.store)
                  if params.map_to_vocab else None)
        llm = llm_for(ctx, params.backend, params.model or "smollm2-135m", params.base_url)
        chunks = by_llm(pool, llm, origin=origin, mapper=mapper, max_tokens=params.max_tokens,
                        max_chars=params.max_chars)
    else:
        raise CurateError(f"label step: unknown method {params.method!r}; valid: embedding, field, llm")
    try:
        report = label_samples(ctx.store, params.method, origin, chunks, vocab=vocab, params=options)
    finally:
        if llm is not None:
            llm.close()
    return StepResult(counts={"labelled": report.labelled, "covered": report.covered, "labels": report.labels,
                              "distinct": report.distinct, "failed": report.failed}, run_id=report.run_id)
