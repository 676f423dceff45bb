"""The label graph MIG propagates information over, as MIG's `SimLabelGraph` builds it.

Nodes: the sorted set of labels in the pool. Edge weights: W = cosine similarity of the raw label
strings' L2-normalised embeddings, entries below the threshold set to 0, self-loops kept
(`mig/label.py`: `wam.where(wam >= sim_threshold, 0.0)` over `E @ E.T`). W is built in row blocks
and kept sparse, so a vocabulary of any size costs memory in its edges, not its square.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import networkx as nx
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from curate.labels import Vocabulary
from curate.models.embed import encode_texts, model_key
from curate.store import Store
from curate.store.tables import insert_missing

if TYPE_CHECKING:
    from curate.selectors.base import Pool  # (curate.selectors imports this package)

BLOCK = 2048   # label rows compared with all labels at a time


@dataclass
class PoolLabels:
    """The labels of a pool's samples as index pairs: sample rows[k] carries label names[cols[k]]."""

    rows: np.ndarray          # pool index of each (sample, label) pair, sorted by row then label
    cols: np.ndarray          # index into `names`
    names: list[str]          # the node set: sorted, distinct
    labelled: np.ndarray      # (len(pool),) bool: the sample has a label of the origin (before the vocabulary)


def pool_labels(pool: Pool, origin: str | None = None, vocab: Vocabulary | None = None) -> PoolLabels:
    """Distinct (sample, label) pairs of `origin` (all origins when None), optionally only labels in `vocab`.

    The labels come back dictionary-encoded from DuckDB, so a pool of millions of pairs never turns
    into Python strings.
    """
    table = pool.fetch("SELECT DISTINCT p.pool_index, l.label FROM pool p JOIN labels l USING (sample_id) "
                       "WHERE ? IS NULL OR l.origin = ?", [origin, origin])
    labelled = np.zeros(len(pool), dtype=bool)
    labelled[table["pool_index"].to_numpy()] = True
    if vocab is not None:
        table = table.filter(pc.is_in(table["label"], value_set=pa.array(vocab.labels, pa.string())))
    encoded = table["label"].combine_chunks().dictionary_encode()
    dictionary = np.asarray(encoded.dictionary.to_pylist(), dtype=object)
    order = np.argsort(dictionary, kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    rows = table["pool_index"].to_numpy().astype(np.int64)
    cols = rank[encoded.indices.to_numpy(zero_copy_only=False)] if len(order) else np.zeros(0, np.int64)
    by_row = np.lexsort((cols, rows))
    return PoolLabels(rows=rows[by_row], cols=cols[by_row], names=dictionary[order].tolist(), labelled=labelled)


def label_vectors(store: Store | None, names: Sequence[str], model: str | None = None) -> np.ndarray:
    """L2-normalised embeddings of the label strings, row per name; cached in `label_embeddings`."""
    names = list(names)
    if store is None or not names:
        return encode_texts(names, model) if names else np.zeros((0, 1), np.float32)
    key = model_key(model)
    wanted = pa.table({"label": pa.array(names, pa.string()), "position": pa.array(np.arange(len(names)))})
    with store.connect() as con:
        con.register("wanted_labels", wanted)
        cached = con.sql("SELECT w.position, e.vector FROM wanted_labels w JOIN label_embeddings e USING (label) "
                         "WHERE e.model = ? ORDER BY w.position", params=[key]).to_arrow_table()
        con.unregister("wanted_labels")
    have = cached["position"].to_numpy()
    missing = np.setdiff1d(np.arange(len(names)), have)
    fresh = encode_texts([names[i] for i in missing], model) if len(missing) else None
    dim = fresh.shape[1] if fresh is not None else len(cached["vector"][0])
    vectors = np.zeros((len(names), dim), dtype=np.float32)
    if len(have):
        flat = cached["vector"].combine_chunks().flatten().to_numpy(zero_copy_only=False)
        vectors[have] = flat.reshape(len(have), dim)
    if fresh is not None:
        vectors[missing] = fresh
        save_label_vectors(store, [names[i] for i in missing], model, fresh)
    return vectors


def save_label_vectors(store: Store, names: Sequence[str], model: str | None, vectors: np.ndarray) -> None:
    """Cache label embeddings (a label already cached for the model keeps its vector)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    column = pa.ListArray.from_arrays(pa.array(np.arange(0, (n + 1) * dim, dim, dtype=np.int32)),
                                      pa.array(vectors.reshape(-1)))
    with store.transaction() as con:
        con.register("new_label_vectors", pa.table({"label": pa.array(list(names), pa.string()),
                                                    "model": pa.repeat(pa.scalar(model_key(model)), n),
                                                    "vector": column}))
        con.execute("CREATE OR REPLACE TEMP VIEW new_label_vector_rows AS "
                    "SELECT *, current_timestamp AS created_at FROM new_label_vectors")
        insert_missing(con, "label_embeddings", "new_label_vector_rows", ["label", "model"])
        con.unregister("new_label_vectors")


@dataclass
class LabelGraph:
    names: list[str]              # node labels, sorted
    weights: sp.csr_matrix        # (L, L) float32: cosine where >= threshold (diagonal included), else absent
    threshold: float
    model: str

    def __len__(self) -> int:
        return len(self.names)

    def dense(self) -> np.ndarray:
        return self.weights.toarray()


def similarity_graph(names: Sequence[str], threshold: float = 0.9, model: str | None = None, *,
                     vectors: np.ndarray | None = None, store: Store | None = None) -> LabelGraph:
    """W over `names` (given sorted) from their embeddings (`vectors`, or those of `model`, cached in `store`)."""
    names = list(names)
    if vectors is None:
        vectors = label_vectors(store, names, model)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    rows, cols, values = [], [], []
    for start in range(0, len(names), BLOCK):
        sims = vectors[start:start + BLOCK] @ vectors.T
        r, c = np.nonzero(sims >= threshold)
        rows.append(r + start)
        cols.append(c)
        values.append(sims[r, c])
    n = len(names)
    weights = sp.csr_matrix((np.concatenate(values) if values else np.zeros(0, np.float32),
                             (np.concatenate(rows) if rows else np.zeros(0, np.int64),
                              np.concatenate(cols) if cols else np.zeros(0, np.int64))), shape=(n, n))
    return LabelGraph(names=names, weights=weights, threshold=threshold, model=model_key(model))


def to_networkx(graph: LabelGraph, samples: np.ndarray | None = None) -> nx.Graph:
    """Undirected, weighted, self-loops kept; node attribute `samples` = pool samples carrying the label."""
    g = nx.Graph(threshold=graph.threshold, model=graph.model)
    for index, name in enumerate(graph.names):
        g.add_node(name, samples=int(samples[index]) if samples is not None else 0)
    upper = sp.triu(graph.weights).tocoo()
    g.add_weighted_edges_from((graph.names[i], graph.names[j], float(w))
                              for i, j, w in zip(upper.row, upper.col, upper.data))
    return g


def describe(g: nx.Graph) -> dict[str, float | int]:
    """Nodes, edges (self-loops apart), connected components and their sizes."""
    components = sorted((len(c) for c in nx.connected_components(g)), reverse=True)
    loops = nx.number_of_selfloops(g)
    edges = g.number_of_edges() - loops
    return {"nodes": g.number_of_nodes(), "edges": edges, "self_loops": loops,
            "components": len(components), "largest_component": components[0] if components else 0,
            "isolated": sum(1 for size in components if size == 1),
            "mean_degree": 2 * edges / g.number_of_nodes() if g.number_of_nodes() else 0.0}
