"""kMQ: k-means backends, k by silhouette, budget allocation, within-cluster draws, refinement rounds."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from curate.errors import CurateError
from curate.ingest import ingest
from curate.models.embed import write_embeddings
from curate.scoring import ScoreRow, write_scores
from curate.selectors import Pool, run_selection
from curate.selectors.kmeans import (
    KMeansSelector,
    allocate,
    choose_k,
    draw_within_clusters,
    kmeans,
    update_weights,
)
from tests.conftest import write_jsonl


def blobs(n: int, centres: int, dim: int = 24, spread: float = 0.08, seed: int = 0):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(centres, dim))
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    truth = rng.integers(0, centres, n)
    vectors = base[truth] + spread * rng.normal(size=(n, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32), truth


# -- allocation -------------------------------------------------------------------------------------


def test_proportional_allocation_sums_to_budget_and_follows_sizes():
    rng = np.random.default_rng(1)
    for _ in range(200):
        sizes = rng.integers(1, 500, rng.integers(2, 40))
        budget = int(rng.integers(1, sizes.sum() + 1))
        quotas = allocate(budget, sizes / sizes.sum(), sizes)
        assert quotas.sum() == budget and np.all(quotas <= sizes) and np.all(quotas >= 0)
        assert np.all(np.abs(quotas - budget * sizes / sizes.sum()) < 1)     # largest remainder: within one
    # largest remainder, exactly: shares 3.5, 2.25, 1.25 -> 3 + 2 + 1 = 6, one left, to the largest remainder
    assert allocate(7, np.array([14, 9, 5]) / 28, np.array([14, 9, 5])).tolist() == [4, 2, 1]


def test_refill_gives_a_small_clusters_excess_to_the_others():
    quotas = allocate(30, np.full(3, 1 / 3), np.array([2, 100, 100]))
    assert quotas.tolist() == [2, 14, 14]
    assert allocate(500, np.full(3, 1 / 3), np.array([2, 5, 7])).tolist() == [2, 5, 7]   # budget above the pool
    # zero-weight clusters are used only when the others run out
    assert allocate(6, np.array([0.0, 1.0]), np.array([10, 4])).tolist() == [2, 4]
    assert allocate(3, np.array([0.0, 1.0]), np.array([10, 4])).tolist() == [0, 3]


# -- draws inside clusters --------------------------------------------------------------------------


def test_draws_respect_quotas_and_eligibility():
    labels = np.repeat(np.arange(4), 25)
    eligible = np.ones(100, bool)
    eligible[::5] = False
    quotas = np.array([3, 0, 20, 5])
    picks = draw_within_clusters(labels, quotas, eligible, np.random.default_rng(0))
    assert len(set(picks.tolist())) == len(picks) == 3 + 0 + 20 + 5
    assert np.all(eligible[picks])
    assert np.bincount(labels[picks], minlength=4).tolist() == [3, 0, 20, 5]
    values = np.arange(100, dtype=float)
    top = draw_within_clusters(labels, quotas, eligible, np.random.default_rng(0), values, temperature=0.0)
    assert top.tolist() == [24, 23, 22] + sorted(np.flatnonzero(eligible & (labels == 2)), reverse=True)[:20] + \
        [99, 98, 97, 96, 94]


def test_one_draw_per_cluster_follows_softmax_of_score_over_temperature():
    labels = np.zeros(5, dtype=np.int64)
    values = np.array([0.0, 1.0, 2.0, 50.0, 49.0]) - 45      # large scores: a naive exp would be fine, 1e3 would not
    temperature = 2.0
    rng = np.random.default_rng(5)
    hits = np.zeros(5)
    for _ in range(20_000):
        hits[draw_within_clusters(labels, np.array([1]), np.ones(5, bool), rng, values, temperature)] += 1
    expected = np.exp((values - values.max()) / temperature)
    np.testing.assert_allclose(hits / 20_000, expected / expected.sum(), atol=0.012)
    huge = np.array([1e4, 1e4 + 1.0, -1e4, 0.0, 5.0])        # stable: no overflow, no NaN
    picks = draw_within_clusters(labels, np.array([3]), np.ones(5, bool), rng, huge, 1e-3)
    assert picks.tolist() == [1, 0, 4]


# -- clustering ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["faiss", "sklearn"])
def test_both_backends_find_the_blobs_and_are_seeded(backend):
    vectors, truth = blobs(3000, 12)
    labels, centroids = kmeans(vectors, 12, seed=0, backend=backend, niter=25, nredo=3)
    again, _ = kmeans(vectors, 12, seed=0, backend=backend, niter=25, nredo=3)
    assert centroids.shape == (12, 24) and labels.shape == (3000,)
    assert np.array_equal(labels, again)
    assert adjusted_rand_score(truth, labels) > 0.9
    with pytest.raises(CurateError, match="k = 5000 clusters needs at least 5000 samples"):
        kmeans(vectors, 5000, backend=backend)


def test_k_auto_picks_the_true_number_of_clusters_by_silhouette():
    vectors, _ = blobs(4000, 16, spread=0.05, seed=2)
    k, scores = choose_k(vectors, (4, 8, 16, 32, 64), sample_size=2000)
    assert k == 16 and set(scores) == {4, 8, 16, 32, 64} and scores[16] == max(scores.values())
    with pytest.raises(CurateError, match="--k auto needs at least"):
        choose_k(vectors[:50], (8, 16))


def test_weight_updates():
    weights = np.array([0.5, 0.3, 0.2])
    # Eq. 6 with non-negative scores: w_j s_j / Σ s, renormalised
    expected = weights * np.array([1.0, 2.0, 1.0]) / 4
    np.testing.assert_allclose(update_weights(weights, np.array([1.0, 2.0, 1.0])), expected / expected.sum())
    # negative scores are shifted by −min: the worst cluster is filtered out
    np.testing.assert_allclose(update_weights(weights, np.array([-1.0, 1.0, 0.0])),
                               np.array([0.0, 0.6, 0.2]) / 0.8)
    # a cluster without feedback gets the mean of the observed scores (keeps its relative weight)
    np.testing.assert_allclose(update_weights(weights, np.array([1.0, np.nan, 3.0])),
                               weights * np.array([1.0, 2.0, 3.0]) / (weights * np.array([1.0, 2.0, 3.0])).sum())
    np.testing.assert_allclose(update_weights(weights, np.array([2.0, 2.0, 2.0]) * 0), weights)    # all equal 0
    softmax = update_weights(weights, np.array([0.0, np.log(3.0), np.nan]), "softmax")
    np.testing.assert_allclose(softmax, np.array([1.0, 3.0, np.sqrt(3.0)]) / (4 + np.sqrt(3.0)))
    with pytest.raises(CurateError, match="no cluster has feedback"):
        update_weights(weights, np.full(3, np.nan))


# -- the selector on a store, and its refinement rounds ------------------------------------------------


@pytest.fixture
def clustered(store, tmp_path):
    """240 samples whose prompt embeddings form 4 blobs of sizes 120, 60, 40, 20."""
    sizes = [120, 60, 40, 20]
    records = [{"prompt": f"topic {c} question {i}", "completion": "answer"} for c, n in enumerate(sizes)
               for i in range(n)]
    ingest(store, [str(write_jsonl(tmp_path / "k.jsonl", records))])
    with store.connect() as con:
        rows = con.execute("SELECT sample_id, prompt FROM samples ORDER BY sample_id").fetchall()
    topic = np.array([int(prompt.split()[1]) for _, prompt in rows])
    base, _ = blobs(4, 4, seed=9)
    rng = np.random.default_rng(3)
    vectors = base[topic] + 0.05 * rng.normal(size=(len(rows), base.shape[1]))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    write_embeddings(store, [sid for sid, _ in rows], None, "prompt", vectors, np.zeros(len(rows), bool))
    write_scores(store, "quality", [ScoreRow(sid, float(i % 7)) for i, (sid, _) in enumerate(rows)])
    return store, {sid: t for (sid, _), t in zip(rows, topic)}


def _rows(store, run_id):
    with store.connect() as con:
        return con.execute("SELECT sample_id, selected, rank, score, reason, details FROM selections "
                           "WHERE run_id = ? ORDER BY rank NULLS LAST, sample_id", [run_id]).fetchall()


def test_kmq_selects_the_budget_by_cluster_size_and_records_every_cluster(clustered, cli):
    store, topic = clustered
    run_id = cli("select", "kmeans", "--budget", 24, "--k", 4, "--score", "quality", "--temperature", 0.5
                 ).stdout.strip().splitlines()[-1]
    rows = _rows(store, run_id)
    assert len(rows) == 240
    kept = [r for r in rows if r[1]]
    assert len(kept) == 24
    clusters = {r[0]: json.loads(r[5])["cluster"] for r in rows}
    # clusters are the topics, and the picks per topic follow the topic sizes: 12, 6, 4, 2
    assert adjusted_rand_score(list(topic.values()), [clusters[s] for s in topic]) == 1.0
    picked_topics = np.bincount([topic[r[0]] for r in kept], minlength=4)
    assert picked_topics.tolist() == [12, 6, 4, 2]
    with store.connect() as con:
        counts = json.loads(con.execute("SELECT counts FROM runs WHERE run_id = ?", [run_id]).fetchone()[0])
    assert counts["k"] == 4 and sum(counts["cluster_quotas"]) == 24 and sorted(counts["cluster_sizes"]) == [20, 40, 60, 120]
    # kM-Random (no score) and the equal split
    equal = cli("select", "kmeans", "--budget", 24, "--k", 4, "--allocation", "equal", "--backend", "sklearn"
                ).stdout.strip().splitlines()[-1]
    kept = [r for r in _rows(store, equal) if r[1]]
    assert np.bincount([topic[r[0]] for r in kept], minlength=4).tolist() == [6, 6, 6, 6]
    assert all(r[3] is None and r[4] == "round 0: kM-Random draw in its cluster" for r in kept)


def test_reference_allocation_is_the_repos_floor_split_without_refill(clustered, cli):
    """The repo's KMenasRandomDeita: int(budget / K) per cluster, capped by its size, nothing refilled."""
    store, topic = clustered
    # topics of 120, 60, 40, 20 samples, budget 100 over k = 4: 25 each, the 20-sample topic gives 20, total 95
    run_id = cli("select", "kmeans", "--budget", 100, "--k", 4, "--score", "quality", "--allocation", "reference"
                 ).stdout.strip().splitlines()[-1]
    kept = [r for r in _rows(store, run_id) if r[1]]
    assert np.bincount([topic[r[0]] for r in kept], minlength=4).tolist() == [25, 25, 25, 20]
    # the paper's allocations fill the budget instead
    for allocation, expected in (("equal", [27, 27, 26, 20]), ("proportional", [50, 25, 17, 8])):
        other = cli("select", "kmeans", "--budget", 100, "--k", 4, "--score", "quality", "--allocation", allocation
                    ).stdout.strip().splitlines()[-1]
        picked = np.bincount([topic[r[0]] for r in _rows(store, other) if r[1]], minlength=4)
        assert picked.sum() == 100 and sorted(picked.tolist(), reverse=True) == sorted(expected, reverse=True)


def test_refinement_rounds_reweight_clusters_by_feedback(clustered, cli, tmp_path):
    store, topic = clustered
    first = cli("select", "kmeans", "--budget", 40, "--k", 4).stdout.strip().splitlines()[-1]
    picks = [r[0] for r in _rows(store, first) if r[1]]
    # feedback: topic 0 clusters are far from learned (+3), topic 1 mildly (+1), topic 2 learned (-1),
    # topic 3 has no feedback at all
    feedback = tmp_path / "feedback.jsonl"
    feedback.write_text("\n".join(json.dumps({"sample_id": s, "value": {0: 3.0, 1: 1.0, 2: -1.0}[topic[s]]})
                                  for s in picks if topic[s] != 3) + "\n")
    cli("score", "import", feedback, "--scorer", "reward_gap")
    second = cli("select", "kmeans", "--budget", 40, "--from-run", first, "--feedback", "reward_gap"
                 ).stdout.strip().splitlines()[-1]
    rows = _rows(store, second)
    kept = [r for r in rows if r[1]]
    assert len(kept) == 80 and [r[0] for r in kept[:40]] == picks                  # cumulative, old picks first
    assert all(r[4] == f"picked in {first}" for r in kept[:40])
    new = [r[0] for r in kept[40:]]
    assert not set(new) & set(picks)
    with store.connect() as con:
        counts = json.loads(con.execute("SELECT counts FROM runs WHERE run_id = ?", [second]).fetchone()[0])
    cluster_of_topic = {topic[r[0]]: json.loads(r[5])["cluster"] for r in rows}
    weights = {t: counts["cluster_weights"][c] for t, c in cluster_of_topic.items()}
    previous = {t: counts["previous_weights"][c] for t, c in cluster_of_topic.items()}
    # shifted scores: 4, 2, 0 and the mean 2 for the missing topic -> w ∝ w_prev * s
    raw = {0: 4.0 * previous[0], 1: 2.0 * previous[1], 2: 0.0, 3: 2.0 * previous[3]}
    for t in range(4):
        assert weights[t] == pytest.approx(raw[t] / sum(raw.values()), abs=1e-5)
    new_topics = np.bincount([topic[s] for s in new], minlength=4)
    assert new_topics[2] == 0 and new_topics[0] > new_topics[1] and new_topics.sum() == 40
    assert counts["round"] == 1 and counts["from_run"] == first
    assert all(json.loads(r[5])["round"] == 1 for r in kept[40:])
    # a third round continues from the second
    third = cli("select", "kmeans", "--budget", 10, "--from-run", second, "--feedback", "reward_gap", "--update",
                "softmax").stdout.strip().splitlines()[-1]
    assert sum(r[1] for r in _rows(store, third)) == 90
    bad = cli("select", "kmeans", "--budget", 5, "--from-run", first, "--feedback", "nothing", expect=1)
    assert "--feedback nothing: no value for any pick" in bad.stderr


def test_kmeans_needs_embeddings(store, tmp_path, cli):
    ingest(store, [str(write_jsonl(tmp_path / "e.jsonl", [{"prompt": "p", "completion": "c"}]))])
    assert "curate embed" in cli("select", "kmeans", "--budget", 1, "--k", 1, expect=1).stderr


@pytest.mark.slow
@pytest.mark.timeout(3600)      # embedding 47K prompts with MiniLM on 2 cores takes minutes (more on a busy box)
def test_kmeans_on_the_t0_pool_selects_5000(store, shared_data, cli):
    ingest(store, [str(shared_data / "instruct" / "t0_train_50k")])
    cli("embed")
    run_id = cli("select", "kmeans", "--budget", 5000, "--k", "auto").stdout.strip().splitlines()[-1]
    pool = Pool.from_store(store)
    assert len(pool) > 45_000
    with store.connect() as con:
        kept, clusters, k = con.execute(
            "SELECT count(*) FILTER (selected), count(DISTINCT json_extract(details, '$.cluster')), "
            "(SELECT CAST(json_extract(counts, '$.k') AS INT) FROM runs WHERE run_id = ?) "
            "FROM selections WHERE run_id = ?", [run_id, run_id]).fetchone()
    assert kept == 5000 and clusters == k >= 8
    # the same pool through scikit-learn and a fixed k also fills the budget
    assert run_selection(store, KMeansSelector(k=256, backend="sklearn"), pool, 5000)
