"""`curate embed --ray`: the same rows through Ray Data's actor pool as through the local path."""

from __future__ import annotations

import numpy as np
import pytest

from curate.ingest import ingest
from curate.models.embed import embed_samples, load_embeddings
from curate.store import Store
from tests.conftest import count, write_jsonl

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster with 2 CPUs, started and stopped by this module."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    yield
    ray.shutdown()


def test_ray_embeddings_equal_the_local_ones(ray_cluster, store, tmp_path, cli):
    # lengths vary so the replicas' batches differ from the local ones; one text exceeds the limit
    records = [{"prompt": f"Question {i}: " + "why " * (3 * i), "completion": f"answer {i}"} for i in range(40)]
    records.append({"prompt": "word " * 400, "completion": "long"})
    data = str(write_jsonl(tmp_path / "a.jsonl", records))
    local = Store(tmp_path / "local.duckdb")
    ingest(local, [data])
    ingest(store, [data])
    expected = embed_samples(local, view="conversation", progress=False)
    result = cli("embed", "--view", "conversation", "--ray", "--batch-size", "8")   # joins this module's cluster
    assert "embedded 41 samples (0 already had one)" in result.stdout and "1 truncated" in result.stdout
    assert expected.computed == 41 and expected.truncated == 1
    with store.connect() as con:
        ids = [row[0] for row in con.execute("SELECT sample_id FROM samples ORDER BY sample_id").fetchall()]
    np.testing.assert_allclose(load_embeddings(store, ids, view="conversation"),
                               load_embeddings(local, ids, view="conversation"), atol=1e-5)
    assert count(store, "SELECT count(*) FROM embeddings WHERE truncated") == 1
    # a second run computes nothing
    assert embed_samples(store, view="conversation", ray=True, progress=False).computed == 0
    assert ray.is_initialized()          # a cluster it joined is left running for its owner


def test_llm_replicas_on_ray_answer_as_the_local_backend(ray_cluster):
    from curate.models.llm import ChatRequest, get_backend
    from curate.models.llm.ray_backend import RayBackend

    requests = [ChatRequest(({"role": "user", "content": f"What is {i} + {i}? Answer with a number."},),
                            temperature=0.0, max_tokens=8) for i in range(5)]
    local = get_backend("transformers", "smollm2-135m")
    on_ray = RayBackend("transformers", "smollm2-135m", replicas=2)
    try:
        assert on_ray.replicas == 2 and on_ray.name == "transformers"
        expected = [[c.text for c in r.choices] for r in local.generate(requests)]
        got = [[c.text for c in r.choices] for r in on_ray.generate(requests)]   # 3 requests + 2, in order
        assert got == expected and all(texts and texts[0] for texts in got)
        assert on_ray.generate([]) == []
    finally:
        on_ray.close()
    assert ray.is_initialized()          # the module's cluster is not this backend's to stop
