"""`curate label field|embedding|llm|graph`: label samples, and inspect the label graph."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import numpy as np
import typer

from curate.cli.app import app, console, store_of
from curate.cli.models import BACKEND, BASE_URL, LLM_MODEL, make_backend
from curate.errors import CurateError
from curate.labels import LabelReport, Vocabulary, label_samples, load_vocab
from curate.models.embed import DEFAULT_MODEL
from curate.selectors.base import Pool

label_app = typer.Typer(no_args_is_help=True, help="Label samples (into `labels`) and inspect the label graph.")
app.add_typer(label_app, name="label")

VOCAB = typer.Option(None, "--label-vocab", help="JSON list of labels: keep only these (MIG's valid_tags.json).")
WHERE = typer.Option(None, "--where", help="SQL predicate over `samples`: label only these.")
EMBED_MODEL = typer.Option(DEFAULT_MODEL, "--model", help="sentence-transformers model for prompts and labels "
                                                          "(default: packaged, offline).")


class SourcePart(str, Enum):
    file = "file"
    name = "name"


def _vocab(path: Path | None) -> Vocabulary | None:
    return load_vocab(path) if path is not None else None


def _report(report: LabelReport) -> None:
    console.print(f"labelled {report.labelled} of {report.covered} samples with {report.labels} labels "
                  f"({report.distinct} distinct), origin {report.origin}")
    if report.failed:
        console.print(f"{report.failed} samples not labelled, each with its reason: curate sql \"SELECT error, "
                      f"count(*) FROM label_failures WHERE run_id = '{report.run_id}' GROUP BY error\"")
    console.print(report.run_id)


@label_app.command("field")
def field_command(
    ctx: typer.Context,
    path: str = typer.Option(None, "--path", help="JSON path in the record's unmapped fields (`meta`): a string "
                                                  "or a list of strings, e.g. category or $.annotation.source."),
    source: SourcePart = typer.Option(None, "--source", help="Label each sample by its input: `file` (the file's "
                                                             "stem: T0's task template) or `name` (--source at ingest)."),
    origin: str = typer.Option(None, "--origin", help="Origin to store them under [default: field, or source]."),
    label_vocab: Path = VOCAB,
    where: str = WHERE,
) -> None:
    """Labels already in the data: a field of each record, or the input it came from."""
    from curate.labels.field import from_meta, from_source, json_path

    if (path is None) == (source is None):
        raise CurateError("give one of --path FIELD or --source file|name (InsTag tags of the mig-pool dialect "
                          "are labels from ingest already, origin instag)")
    store = store_of(ctx)
    pool = Pool.from_store(store, where)
    if path is not None:
        origin = origin or "field"
        chunks = from_meta(pool, json_path(path), origin)
    else:
        origin = origin or "source"
        chunks = from_source(pool, source.value, origin)
    params = {"path": path, "source": source.value if source else None, "where": where}
    _report(label_samples(store, "field", origin, chunks, vocab=_vocab(label_vocab), params=params))


@label_app.command("embedding")
def embedding_command(
    ctx: typer.Context,
    label_vocab: Path = typer.Option(..., "--label-vocab", help="JSON list of the candidate labels."),
    top_k: int = typer.Option(5, "--top-k", min=1, help="Labels per sample, at most."),
    floor: float = typer.Option(0.3, "--floor", help="Least cosine similarity for a label to count."),
    model: str = EMBED_MODEL,
    origin: str = typer.Option("embedding", "--origin"),
    where: str = WHERE,
    batch_size: int = typer.Option(64, "--batch-size", min=1),
) -> None:
    """Zero-shot tagging: each sample's top-k vocabulary labels by prompt-embedding cosine, above a floor."""
    from curate.labels.embedding import by_embedding

    store = store_of(ctx)
    vocab = load_vocab(label_vocab)
    pool = Pool.from_store(store, where)
    chunks = by_embedding(pool, vocab, top_k=top_k, floor=floor, model=model, origin=origin, batch_size=batch_size)
    params = {"top_k": top_k, "floor": floor, "model": model, "where": where}
    _report(label_samples(store, "embedding", origin, chunks, vocab=vocab, params=params))


@label_app.command("llm")
def llm_command(
    ctx: typer.Context,
    backend: str = BACKEND,
    model: str = LLM_MODEL,
    base_url: str = BASE_URL,
    label_vocab: Path = VOCAB,
    map_to_vocab: bool = typer.Option(False, "--map-to-vocab", help="Map each tag onto its most similar "
                                                                    "--label-vocab label instead of keeping exact "
                                                                    "matches only."),
    map_floor: float = typer.Option(0.8, "--map-floor", help="Least cosine for --map-to-vocab to map a tag."),
    label_model: str = typer.Option(DEFAULT_MODEL, "--label-model", help="Embedding model for --map-to-vocab."),
    origin: str = typer.Option("llm", "--origin"),
    max_tokens: int = typer.Option(256, "--max-tokens", min=1),
    max_chars: int = typer.Option(2000, "--max-chars", min=1, help="Query characters shown to the model."),
    where: str = WHERE,
) -> None:
    """InsTag-style open tagging with an LLM: tags normalised, optionally mapped onto a vocabulary."""
    from curate.labels.llm import VocabularyMapper, by_llm

    if map_to_vocab and label_vocab is None:
        raise CurateError("--map-to-vocab needs --label-vocab FILE")
    store = store_of(ctx)
    vocab = _vocab(label_vocab)
    mapper = VocabularyMapper(vocab, map_floor, label_model, store) if map_to_vocab else None
    pool = Pool.from_store(store, where)
    llm = make_backend(store, backend, model, base_url)
    try:
        chunks = by_llm(pool, llm, origin=origin, mapper=mapper, max_tokens=max_tokens, max_chars=max_chars)
        params = {"backend": backend, "model": model, "map_to_vocab": map_to_vocab, "map_floor": map_floor,
                  "label_model": label_model, "max_tokens": max_tokens, "max_chars": max_chars, "where": where}
        _report(label_samples(store, "llm", origin, chunks, vocab=vocab, params=params))
    finally:
        llm.close()


@label_app.command("graph")
def graph_command(
    ctx: typer.Context,
    label_origin: str = typer.Option(None, "--label-origin", help="Only labels of this origin [default: all]."),
    label_vocab: Path = VOCAB,
    label_model: str = typer.Option(DEFAULT_MODEL, "--label-model", help="Embedding model for the label strings."),
    sim_threshold: float = typer.Option(0.9, "--sim-threshold", help="Edges where cosine >= this (MIG's tau)."),
    where: str = WHERE,
    export: Path = typer.Option(None, "--export", help="Write the graph as GraphML (.graphml) to this file."),
    top: int = typer.Option(10, "--top", min=0, help="Show this many best-connected labels."),
) -> None:
    """MIG's label graph over the pool's labels: nodes, edges, components; export as GraphML."""
    import networkx as nx

    from curate.labels.graph import describe, pool_labels, similarity_graph, to_networkx

    store = store_of(ctx)
    pool = Pool.from_store(store, where)
    labels = pool_labels(pool, label_origin, _vocab(label_vocab))
    if not labels.names:
        raise CurateError("no labels in the pool" + (f" of origin {label_origin!r}" if label_origin else ""))
    graph = to_networkx(similarity_graph(labels.names, sim_threshold, label_model, store=store),
                        samples=np.bincount(labels.cols, minlength=len(labels.names)))
    stats = describe(graph)
    console.print(f"label graph: {stats['nodes']} nodes, {stats['edges']} edges (+{stats['self_loops']} self-loops), "
                  f"{stats['components']} components (largest {stats['largest_component']}, "
                  f"{stats['isolated']} isolated labels), mean degree {stats['mean_degree']:.2f}")
    degrees = sorted(((d - 2 * graph.has_edge(n, n), n) for n, d in graph.degree()), key=lambda t: (-t[0], t[1]))
    for degree, name in degrees[:top]:
        if degree:
            neighbours = sorted(m for m in graph.neighbors(name) if m != name)
            console.print(f"  {name} ({degree}): {', '.join(neighbours[:8])}{' ...' if len(neighbours) > 8 else ''}")
    if export is not None:
        if export.suffix.lower() != ".graphml":
            raise CurateError(f"--export {export}: expected a .graphml file name")
        nx.write_graphml(graph, export)
        console.print(f"wrote {export}")
