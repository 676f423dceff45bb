"""The `quality` (QuRating sampler) and `deita` (score-first + Repr filter) selectors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from curate.ingest import ingest
from curate.models.embed import write_embeddings
from curate.scoring import ScoreRow, write_scores
from curate.selectors import Pool, run_selection
from curate.selectors.deita import DeitaSelector, repr_filter
from curate.selectors.quality import QualitySelector, descending, gumbel_keys, z_normalise
from tests.conftest import count, write_jsonl

# -- the Gumbel sampler ----------------------------------------------------------------------------


def _successive_inclusion(weights: np.ndarray, k: int, draws: int, rng) -> np.ndarray:
    """Inclusion frequencies of sequential sampling without replacement, p ∝ weights (the law itself)."""
    hits = np.zeros(len(weights))
    p = weights / weights.sum()
    for _ in range(draws):
        hits[rng.choice(len(weights), size=k, replace=False, p=p)] += 1
    return hits / draws


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_gumbel_sampler_follows_the_exp_law(temperature):
    scores = np.array([3.0, 1.0, 0.0, -0.5, 2.5, 1.5, -2.0, 0.7])
    z = z_normalise(scores)
    weights = np.exp(z / temperature)
    draws = 20_000
    rng = np.random.default_rng(11)
    first = np.zeros(len(scores))
    top3 = np.zeros(len(scores))
    for _ in range(draws):
        order = descending(gumbel_keys(scores, temperature, rng))
        first[order[0]] += 1
        top3[order[:3]] += 1
    # one pick: exactly softmax(z / τ)
    np.testing.assert_allclose(first / draws, weights / weights.sum(), atol=0.012)
    # three picks: the inclusion law of successive sampling without replacement
    expected = _successive_inclusion(weights, 3, draws, np.random.default_rng(12))
    np.testing.assert_allclose(top3 / draws, expected, atol=0.02)


def test_zero_temperature_is_top_k_and_small_temperature_converges_to_it():
    scores = np.random.default_rng(0).normal(size=500)
    top = np.argsort(-scores)[:50]
    assert descending(gumbel_keys(scores, 0.0, np.random.default_rng(1)))[:50].tolist() == top.tolist()
    near_zero = descending(gumbel_keys(scores, 1e-6, np.random.default_rng(2)))[:50]
    assert set(near_zero.tolist()) == set(top.tolist())
    # ties keep pool order
    assert descending(np.array([1.0, 2.0, 1.0, 2.0])).tolist() == [1, 3, 0, 2]


@pytest.fixture
def scored(store, tmp_path):
    records = [{"prompt": f"question number {i}", "completion": "word " * (i + 1)} for i in range(40)]
    ingest(store, [str(write_jsonl(tmp_path / "p.jsonl", records))])
    with store.connect() as con:
        rows = con.execute("SELECT sample_id, prompt FROM samples").fetchall()
    by_number = {int(prompt.split()[-1]): sid for sid, prompt in rows}
    # sample i scores i; sample 39 has no score, sample 38 a failure
    write_scores(store, "judge", [ScoreRow(by_number[i], float(i)) for i in range(38)]
                 + [ScoreRow(by_number[38], None, error="unreadable")])
    return store, by_number


def test_quality_selector_records_cut_and_unscored(scored):
    store, by_number = scored
    pool = Pool.from_store(store)
    run_id = run_selection(store, QualitySelector(score="judge", temperature=0.0), pool, 5)
    with store.connect() as con:
        kept = con.execute("SELECT sample_id, score FROM selections WHERE run_id = ? AND selected ORDER BY rank",
                           [run_id]).fetchall()
        reasons = dict(con.execute("SELECT reason, count(*) FROM selections WHERE run_id = ? AND NOT selected "
                                   "GROUP BY reason", [run_id]).fetchall())
    assert kept == [(by_number[i], float(i)) for i in (37, 36, 35, 34, 33)]
    assert reasons == {"below the cut": 33, "no score judge": 2}
    sampled = run_selection(store, QualitySelector(score="judge", temperature=1.0, seed=3), pool, 5)
    again = run_selection(store, QualitySelector(score="judge", temperature=1.0, seed=3), pool, 5)
    with store.connect() as con:
        def picks(run):
            return con.execute("SELECT sample_id FROM selections WHERE run_id = ? AND selected ORDER BY rank",
                               [run]).fetchall()
        assert picks(sampled) == picks(again) != [(s,) for s, _ in kept]


def test_token_budget_takes_through_the_sample_that_reaches_it(scored, cli):
    store, _ = scored
    from curate.models.embed import model_path

    # MiniLM's WordPiece tokenizer (packaged, quick to load) stands in for an LLM's
    result = cli("select", "quality", "--score", "judge", "--budget-tokens", 60, "--temperature", 0,
                 "--tokenizer", model_path(None))
    run_id = result.stdout.strip().splitlines()[-1]
    with store.connect() as con:
        details = [json.loads(d) for (d,) in con.execute(
            "SELECT details FROM selections WHERE run_id = ? AND selected ORDER BY rank", [run_id]).fetchall()]
    tokens = [d["tokens"] for d in details]
    assert sum(tokens) >= 60 and sum(tokens[:-1]) < 60
    assert tokens[0] > tokens[-1] > 0                 # longer completions scored higher here
    cli("select", "quality", "--score", "judge", expect=1)           # neither budget
    assert "no sample of the pool has a score 'nope'" in cli("select", "quality", "--score", "nope", "--budget", 3,
                                                             expect=1).stderr


# -- the DEITA Repr filter -------------------------------------------------------------------------


def deita_reference_walk(vectors: np.ndarray, threshold: float, budget: int) -> list[int]:
    """DEITA's IterativeFilter with batch size 1: each candidate against every kept one."""
    kept = [0]
    for i in range(1, len(vectors)):
        if len(kept) >= budget:
            break
        if np.max(vectors[kept] @ vectors[i]) > threshold:
            continue
        kept.append(i)
    return kept[:budget]


def near_duplicates(n: int, centres: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(centres, 32))
    groups = rng.integers(0, centres, n)
    vectors = base[groups] + noise * rng.normal(size=(n, 32))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32), groups


@pytest.mark.parametrize("chunk", [1, 7, 64, 4096])
@pytest.mark.parametrize("budget", [5, 40, 1000])
def test_repr_filter_equals_the_reference_walk_and_keeps_its_invariant(chunk, budget):
    vectors, _ = near_duplicates(600, 60, 0.35, seed=budget)
    vectors[1] = vectors[0]                                  # an exact duplicate right after the first
    threshold = 0.9
    result = repr_filter(vectors, threshold, budget, chunk=chunk)
    assert result.kept.tolist() == deita_reference_walk(vectors, threshold, budget)
    kept = vectors[result.kept]
    similarity = kept @ kept.T
    np.fill_diagonal(similarity, -1)
    assert similarity.max() <= threshold                     # every kept pair
    blocked = np.flatnonzero(result.blocker >= 0)
    assert len(blocked) > 0
    assert np.all(result.blocker[blocked] < blocked)         # blocked by an earlier kept sample...
    assert set(result.blocker[blocked].tolist()) <= set(result.kept.tolist())
    np.testing.assert_allclose(result.similarity[blocked],
                               np.sum(vectors[blocked] * vectors[result.blocker[blocked]], axis=1), atol=1e-5)
    assert np.all(result.similarity[blocked] > threshold)    # ...that it is too close to
    if len(result.kept) == budget:                           # nothing after the last kept sample was looked at
        assert np.all(result.blocker[result.kept[-1] + 1:] == -2)


def test_deita_selector_drops_near_duplicates_in_score_order(store, tmp_path, cli):
    records = [{"prompt": f"p{i}", "completion": "c"} for i in range(30)]
    ingest(store, [str(write_jsonl(tmp_path / "d.jsonl", records))])
    pool = Pool.from_store(store)
    vectors, groups = near_duplicates(30, 6, 0.05, seed=3)         # 6 groups of near-identical samples
    write_embeddings(store, pool.ids.tolist(), None, "conversation", vectors, np.zeros(30, bool))
    write_scores(store, "q", [ScoreRow(sid, float(i)) for i, sid in enumerate(pool.ids)])
    run_id = cli("select", "deita", "--score", "q", "--budget", 10).stdout.strip().splitlines()[-1]
    with store.connect() as con:
        kept = [sid for (sid,) in con.execute(
            "SELECT sample_id FROM selections WHERE run_id = ? AND selected ORDER BY rank", [run_id]).fetchall()]
        dropped = con.execute("SELECT sample_id, reason, details FROM selections WHERE run_id = ? AND NOT selected",
                              [run_id]).fetchall()
    index = {sid: i for i, sid in enumerate(pool.ids)}
    order = [index[s] for s in kept]
    assert order == sorted(order, reverse=True)                          # walked by score
    assert sorted(groups[order].tolist()) == sorted(set(groups.tolist()))   # one per group: the best scored
    assert order == [max(np.flatnonzero(groups == g)) for g in groups[order]]
    assert len(dropped) == 30 - len(kept) and count(store, "SELECT count(*) FROM runs") == 1
    for sample_id, reason, details in dropped:
        assert reason == "cosine > 0.9 to a kept sample"
        details = json.loads(details)
        assert details["nearest_kept"] in kept and details["cosine"] > 0.9
    with pytest.raises(Exception, match="curate embed"):
        run_selection(store, DeitaSelector(score="q", view="prompt"), pool, 3)
