"""Embeddings on a Ray cluster: Ray Data `map_batches` over an actor pool of model replicas.

`embed_samples(store, ..., ray=True)` uses this. The driver reads the texts from the store, Ray Data
spreads them in blocks over the replicas (one per GPU where the cluster has GPUs, else one per CPU),
and the vectors stream back to the driver, which alone writes the store, chunk by chunk, exactly the
rows the local path writes. Workers import `curate` and load the model themselves, so each node
needs curate and the model installed (the default model ships in a package).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from curate.models.embed import CHUNK, encode_chunk, fetch_texts, load_model
from curate.store import Store

BLOCK = 1024     # texts per Ray block and per replica call


class EmbedReplica:
    """One model replica in the actor pool: encodes a batch of {sample_id, text}."""

    def __init__(self, model: str | None, batch_size: int):
        self.encoder = load_model(model)          # CUDA when Ray gave this actor a GPU
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vectors, truncated = encode_chunk(self.encoder, batch["text"].tolist(), self.batch_size)
        return {"sample_id": batch["sample_id"], "vector": vectors, "truncated": truncated}


def connect(address: str | None) -> bool:
    """Join the cluster at `address` (else RAY_ADDRESS, else start a local one); True if we started it."""
    import ray

    if ray.is_initialized():
        return False
    ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    return True


def encode_on_ray(store: Store, todo: np.ndarray, model: str | None, view: str, *, batch_size: int = 64,
                  address: str | None = None,
                  replicas: int | None = None) -> Iterator[tuple[list[str], np.ndarray, np.ndarray]]:
    """(ids, vectors, truncated) for the samples `todo`, in chunks of up to CHUNK, as they come back."""
    import ray
    from ray.data import ActorPoolStrategy, DataContext

    started_here = connect(address)
    try:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        size = replicas or gpus or max(1, int(resources.get("CPU", 1)))
        block = max(1, min(BLOCK, -(-len(todo) // size)))     # small inputs still reach every replica
        blocks = []
        for start in range(0, len(todo), block):
            ids = todo[start:start + block].tolist()
            blocks.append(pa.table({"sample_id": pa.array(ids, pa.string()),
                                    "text": pa.array(fetch_texts(store, ids, view), pa.string())}))
        DataContext.get_current().enable_progress_bars = False      # embed_samples shows its own
        dataset = ray.data.from_arrow(blocks).map_batches(
            EmbedReplica, fn_constructor_kwargs={"model": model, "batch_size": batch_size}, batch_size=block,
            batch_format="numpy", compute=ActorPoolStrategy(size=size),
            num_gpus=1 if gpus else 0, num_cpus=1)
        del blocks
        for batch in dataset.iter_batches(batch_size=CHUNK, batch_format="numpy"):
            yield batch["sample_id"].tolist(), np.asarray(batch["vector"], dtype=np.float32), batch["truncated"]
    finally:
        if started_here:
            ray.shutdown()
