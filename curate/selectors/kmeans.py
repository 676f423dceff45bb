"""kMQ: k-means diversity with quality sampling, and its iterative refinement
(for-ai/iterative-data-selection; Yu et al. 2024, "Diversify and Conquer").

One round:
1. k-means on the prompt embeddings (the repo's `tulu_user_only` view): faiss when installed,
   scikit-learn's MiniBatchKMeans otherwise, seeded. `k="auto"` picks k from a grid by the
   silhouette score on a sample (the paper's recommendation).
2. The budget is split over clusters in proportion to their sizes (paper Eq. 3; `allocation="equal"`
   splits it evenly), rounded by largest remainder; a cluster smaller than its share gives the rest
   back to the others (refill), so the picks sum to the budget. `allocation="reference"` is the
   repo's code (`KMeansRandom`, `KMenasRandomDeita`): int(budget / k) from each cluster, capped by
   its size, no refill, so a round can fall short of the budget.
3. Within a cluster, samples are drawn without replacement with p ∝ softmax(score / τ)
   (KMenasRandomDeita uses exp(score), τ = 1), by Gumbel-top-k, which never exponentiates and so
   cannot overflow; without a score the draw is uniform (kM-Random).
Every pool sample gets a `selections` row with its cluster: the picks, and the rest as dropped.

Iterative refinement (paper Algorithm 1) continues from a previous round's run: its clustering and
cluster weights are reused, a per-sample feedback score of its picks (e.g. reward of the gold
answer minus reward of the fine-tuned model's answer, imported with `curate score import`) is
averaged per cluster (s_j), the weights are updated, and the next `budget` samples are drawn from
the samples not yet picked. The new run keeps the previous picks first, so it is the cumulative
training set. Weight updates:
- `eq6` (paper Eq. 6): w_j ← w_j · s_j / Σ_l s_l, renormalised. Eq. 6 needs s ≥ 0; reward
  differences can be negative, so when any s_j < 0 all cluster scores are shifted by −min s (the
  worst cluster gets weight 0: the paper's "filters out clusters containing low-quality data").
  A cluster without feedback (none of its picks scored, or no picks) gets the mean of the observed
  scores, i.e. it keeps its weight relative to the average. If every shifted score is 0 the
  weights are left unchanged.
- `softmax` (the repo's `selection/iter.py`): w = softmax(s), replacing the old weights; missing
  clusters get the mean as above. (The repo then draws per-cluster counts multinomially; here the
  expected counts are allocated by largest remainder.)
When every cluster with positive weight runs out of samples, the remaining budget goes to the
zero-weight clusters in proportion to what they have left, so a round always fills its budget
while the pool lasts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from curate.errors import CurateError
from curate.selectors.base import Pool, Selection, Selector, register
from curate.selectors.quality import require_scores

K_GRID = (8, 16, 32, 64, 128, 256, 512, 1024)
ALLOCATIONS = ("proportional", "equal", "reference")


def has_faiss() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def kmeans(vectors: np.ndarray, k: int, *, seed: int = 0, backend: str = "auto", niter: int = 20, nredo: int = 1,
           max_points_per_centroid: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(labels, centroids). Centroids are trained on at most k·max_points_per_centroid random rows
    (faiss's own subsampling rule), then every row is assigned to its nearest centroid."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    if not 1 <= k <= n:
        raise CurateError(f"k = {k} clusters needs at least {k} samples; the pool has {n}")
    if backend == "auto":
        backend = "faiss" if has_faiss() else "sklearn"
    rng = np.random.default_rng(seed)
    limit = k * max_points_per_centroid
    train = vectors if n <= limit else vectors[np.sort(rng.choice(n, limit, replace=False))]
    if backend == "faiss":
        import faiss

        model = faiss.Kmeans(dim, k, niter=niter, nredo=nredo, seed=seed, max_points_per_centroid=len(train),
                             min_points_per_centroid=1, verbose=False)
        model.train(train)
        centroids = model.centroids
        index = faiss.IndexFlatL2(dim)
        index.add(centroids)
        _, labels = index.search(vectors, 1)
        return labels.reshape(-1).astype(np.int64), centroids
    if backend == "sklearn":
        from sklearn.cluster import MiniBatchKMeans, kmeans_plusplus
        from threadpoolctl import threadpool_limits

        batch = min(4096, len(train))
        init_size = min(len(train), max(3 * batch, 3 * k))     # MiniBatchKMeans's own rule
        best = None
        for redo in range(nredo):
            # Its k-means++ seeding is many small products: threads add nothing there and stall badly
            # on a busy machine, so the seeding runs on one.
            with threadpool_limits(1):
                rows = np.sort(rng.choice(len(train), init_size, replace=False))
                seeds, _ = kmeans_plusplus(train[rows], k, random_state=seed + redo)
            model = MiniBatchKMeans(n_clusters=k, init=seeds, n_init=1, random_state=seed + redo, max_iter=niter,
                                    batch_size=batch, compute_labels=False).fit(train)
            inertia = -model.score(train) if nredo > 1 else 0.0
            if best is None or inertia < best[0]:
                best = (inertia, model)
        model = best[1]
        return model.predict(vectors).astype(np.int64), model.cluster_centers_.astype(np.float32)
    raise CurateError(f"unknown k-means backend {backend!r}; choose faiss, sklearn or auto")


def choose_k(vectors: np.ndarray, grid: Sequence[int] = K_GRID, *, sample_size: int = 10_000, seed: int = 0,
             backend: str = "auto", niter: int = 20) -> tuple[int, dict[int, float]]:
    """The k of `grid` with the best silhouette score on a random sample of the rows."""
    from sklearn.metrics import silhouette_score

    rng = np.random.default_rng(seed)
    sample = vectors if len(vectors) <= sample_size else vectors[np.sort(rng.choice(len(vectors), sample_size,
                                                                                    replace=False))]
    # At least ~10 samples per cluster, or the silhouette is meaningless.
    candidates = [k for k in grid if 2 <= k <= len(sample) // 10]
    if not candidates:
        raise CurateError(f"--k auto needs at least {10 * min(grid)} samples to compare cluster counts; "
                          f"the pool has {len(vectors)}: give --k")
    scores = {}
    for k in candidates:
        labels, _ = kmeans(sample, k, seed=seed, backend=backend, niter=niter)
        scores[k] = float(silhouette_score(sample, labels)) if len(np.unique(labels)) > 1 else -1.0
    return max(scores, key=lambda k: (scores[k], -k)), scores


def allocate(budget: int, weights: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """Integer quotas ∝ weights, each ≤ its capacity, summing to min(budget, Σ capacity).

    Largest-remainder rounding (ties to the lower cluster index); a cluster that cannot take its
    share gives the excess back, shared again among the others by weight (refill). Clusters of
    zero weight are used last, in proportion to their capacity, and only if the others run out.
    """
    weights = np.asarray(weights, dtype=np.float64)
    capacity = np.asarray(capacity, dtype=np.int64)
    if np.any(weights < 0) or not np.all(np.isfinite(weights)):
        raise ValueError("weights must be finite and non-negative")
    quotas = np.zeros(len(capacity), dtype=np.int64)
    remaining = int(min(budget, capacity.sum()))
    for tier in (weights, capacity.astype(np.float64)):     # by weight, then zero-weight clusters by capacity
        active = (tier > 0) & (quotas < capacity)
        while remaining > 0 and active.any():
            share = remaining * np.where(active, tier, 0.0) / tier[active].sum()
            base = np.floor(share).astype(np.int64)
            extra = remaining - int(base.sum())
            if extra:
                base[np.argsort(-(share - base), kind="stable")[:extra]] += 1
            added = np.minimum(base, capacity - quotas)
            quotas += added
            remaining -= int(added.sum())
            active &= quotas < capacity
    return quotas


def draw_within_clusters(labels: np.ndarray, quotas: np.ndarray, eligible: np.ndarray, rng: np.random.Generator,
                         values: np.ndarray | None = None, temperature: float = 1.0) -> np.ndarray:
    """Indices drawn without replacement inside each cluster j (quotas[j] of them, among `eligible`),
    p ∝ exp(value / τ) by Gumbel-top-k (uniform without values; τ = 0: the top values), ordered by
    cluster and then by draw order."""
    candidates = np.flatnonzero(eligible)
    if values is None:
        keys = rng.gumbel(size=len(candidates))
    elif temperature == 0:
        keys = values[candidates].astype(np.float64)
    else:
        keys = values[candidates] / temperature + rng.gumbel(size=len(candidates))
    cluster = labels[candidates]
    order = np.lexsort((-keys, cluster))          # by cluster, then key descending (stable)
    cluster_sorted = cluster[order]
    first = np.searchsorted(cluster_sorted, cluster_sorted, side="left")
    rank_in_cluster = np.arange(len(order)) - first
    picked = rank_in_cluster < quotas[cluster_sorted]
    return candidates[order[picked]]


def update_weights(weights: np.ndarray, cluster_scores: np.ndarray, rule: str = "eq6") -> np.ndarray:
    """New cluster weights from per-cluster feedback (NaN = no feedback); see the module docstring."""
    weights = np.asarray(weights, dtype=np.float64)
    scores = np.asarray(cluster_scores, dtype=np.float64)
    observed = ~np.isnan(scores)
    if not observed.any():
        raise CurateError("no cluster has feedback for the previous round's picks")
    scores = np.where(observed, scores, scores[observed].mean())
    if rule == "softmax":
        shifted = np.exp(scores - scores.max())
        return shifted / shifted.sum()
    if rule != "eq6":
        raise CurateError(f"unknown weight update {rule!r}; choose eq6 or softmax")
    if scores.min() < 0:
        scores = scores - scores.min()
    updated = weights * scores / scores.sum() if scores.sum() > 0 else weights
    return updated / updated.sum() if updated.sum() > 0 else weights


@register
class KMeansSelector(Selector):
    """kMQ (with `score`) or kM-Random (without): k-means clusters, budget by cluster size, draw inside."""

    name = "kmeans"

    def __init__(self, k: int | str = "auto", score: str | None = None, temperature: float = 1.0,
                 allocation: str = "proportional", backend: str = "auto", embedding_model: str | None = None,
                 view: str = "prompt", seed: int = 0, niter: int = 20, nredo: int = 1,
                 max_points_per_centroid: int = 64, k_grid: tuple[int, ...] = K_GRID,
                 from_run: str | None = None, feedback: str | None = None, update: str = "eq6"):
        self.k = k
        self.score = score
        self.temperature = temperature
        self.allocation = allocation
        self.backend = backend
        self.embedding_model = embedding_model
        self.view = view
        self.seed = seed
        self.niter = niter
        self.nredo = nredo
        self.max_points_per_centroid = max_points_per_centroid
        self.k_grid = tuple(k_grid)
        self.from_run = from_run
        self.feedback = feedback
        self.update = update

    # -- one round --------------------------------------------------------------------------------

    def select(self, pool: Pool, budget: int | None) -> Selection:
        if self.temperature < 0:
            raise CurateError("--temperature must be >= 0")
        if self.allocation not in ALLOCATIONS:
            raise CurateError(f"unknown allocation {self.allocation!r}; choose {', '.join(ALLOCATIONS)}")
        if (self.from_run is None) != (self.feedback is None):
            raise CurateError("iterative refinement needs both --from-run and --feedback")
        budget = len(pool) if budget is None else budget
        if self.from_run is not None:
            return self._next_round(pool, budget)
        vectors = pool.embeddings(self.embedding_model, self.view)
        counts: dict = {}
        k = self.k
        if k == "auto":
            k, silhouettes = choose_k(vectors, self.k_grid, seed=self.seed, backend=self.backend, niter=self.niter)
            counts["silhouette"] = {str(key): round(value, 4) for key, value in silhouettes.items()}
        k = int(k)
        labels, _ = kmeans(vectors, k, seed=self.seed, backend=self.backend, niter=self.niter, nredo=self.nredo,
                           max_points_per_centroid=self.max_points_per_centroid)
        sizes = np.bincount(labels, minlength=k)
        weights = sizes / sizes.sum() if self.allocation == "proportional" else (sizes > 0) / (sizes > 0).sum()
        return self._draw(pool, budget, labels, weights, picked_before=np.zeros(len(pool), dtype=bool),
                          counts={**counts, "k": k, "round": 0, "cluster_sizes": sizes.tolist()})

    def _draw(self, pool: Pool, budget: int, labels: np.ndarray, weights: np.ndarray, picked_before: np.ndarray,
              counts: dict, carried: Selection | None = None) -> Selection:
        k = len(weights)
        values = require_scores(pool, self.score) if self.score else None
        eligible = ~picked_before & (labels >= 0)
        if values is not None:
            eligible &= ~np.isnan(values)
        capacity = np.bincount(labels[eligible], minlength=k)
        if self.allocation == "reference" and counts["round"] == 0:
            quotas = np.minimum(budget // k, capacity)        # the repo: int(coreset_size / K), no refill
        else:
            quotas = allocate(budget, weights, capacity)
        rng = np.random.default_rng([self.seed, counts["round"]])
        picks = draw_within_clusters(labels, quotas, eligible, rng, values, self.temperature)
        chosen = np.zeros(len(pool), dtype=bool)
        chosen[picks] = True
        how = (f"kMQ draw by softmax({self.score}/τ={self.temperature})" if self.score else "kM-Random draw")
        reason = f"round {counts['round']}: {how} in its cluster"
        dropped = np.flatnonzero(~chosen & ~picked_before)
        why = np.full(len(dropped), "not drawn", dtype=object)
        if values is not None:
            why[np.isnan(values[dropped])] = f"no score {self.score}"
        why[labels[dropped] < 0] = f"not in run {self.from_run}'s clustering"

        selection = Selection(
            ids=pool.ids[picks].tolist(),
            scores=values[picks].tolist() if values is not None else [None] * len(picks),
            reasons=[reason] * len(picks),
            details=[{"cluster": int(labels[i]), "round": counts["round"]} for i in picks],
            dropped_ids=pool.ids[dropped].tolist(), dropped_reasons=why.tolist(),
            dropped_details=[{"cluster": int(labels[i])} if labels[i] >= 0 else None for i in dropped],
            counts={**counts, "cluster_weights": [round(float(w), 6) for w in weights],
                    "cluster_quotas": quotas.tolist(), "drawn": len(picks)})
        if carried is not None:        # the previous rounds' picks come first: the run is the cumulative set
            selection = Selection(
                ids=carried.ids + selection.ids, scores=carried.scores + selection.scores,
                reasons=carried.reasons + selection.reasons, details=carried.details + selection.details,
                dropped_ids=selection.dropped_ids, dropped_reasons=selection.dropped_reasons,
                dropped_details=selection.dropped_details, counts=selection.counts)
        return selection

    # -- iterative refinement -------------------------------------------------------------------

    def _next_round(self, pool: Pool, budget: int) -> Selection:
        from curate.store.runs import get_run

        previous = get_run(pool.store, self.from_run)
        if previous["kind"] != "select:kmeans" or previous["status"] != "completed":
            raise CurateError(f"--from-run {self.from_run}: a completed `select kmeans` run is needed, "
                              f"not {previous['kind']} ({previous['status']})")
        weights = np.asarray(previous["counts"]["cluster_weights"], dtype=np.float64)
        k = len(weights)
        table = pool.fetch(
            "SELECT p.pool_index, s.selected, s.rank, s.score, s.reason, s.details, "
            "CAST(json_extract(s.details, '$.cluster') AS BIGINT) AS cluster, "
            "CAST(json_extract(s.details, '$.round') AS BIGINT) AS round "
            "FROM pool p JOIN selections s USING (sample_id) WHERE s.run_id = ? ORDER BY s.rank NULLS LAST",
            [self.from_run])
        index = table["pool_index"].to_numpy()
        labels = np.full(len(pool), -1, dtype=np.int64)
        cluster = table["cluster"].to_numpy(zero_copy_only=False)
        labels[index] = np.where(np.isnan(cluster.astype(np.float64)), -1, cluster).astype(np.int64)
        selected = np.asarray(table["selected"].to_pylist())
        picked_before = np.zeros(len(pool), dtype=bool)
        picked_before[index[selected]] = True
        if not picked_before.any():
            raise CurateError(f"--from-run {self.from_run}: none of its picks is in this pool")

        feedback = pool.scores(self.feedback)
        with_feedback = picked_before & ~np.isnan(feedback) & (labels >= 0)
        if not with_feedback.any():
            raise CurateError(f"--feedback {self.feedback}: no value for any pick of run {self.from_run} "
                              f"(import one with: curate score import FILE --scorer {self.feedback})")
        sums = np.bincount(labels[with_feedback], weights=feedback[with_feedback], minlength=k)
        numbers = np.bincount(labels[with_feedback], minlength=k)
        cluster_scores = np.where(numbers > 0, sums / np.maximum(numbers, 1), np.nan)
        new_weights = update_weights(weights, cluster_scores, self.update)

        kept_rows = table.filter(table["selected"])
        carried = Selection(ids=pool.ids[kept_rows["pool_index"].to_numpy()].tolist(),
                            scores=kept_rows["score"].to_pylist(),
                            reasons=[f"picked in {self.from_run}"] * kept_rows.num_rows,
                            details=[{"cluster": int(c), "round": int(r) if r is not None else 0}
                                     for c, r in zip(kept_rows["cluster"].to_pylist(), kept_rows["round"].to_pylist())])
        round_number = int(previous["counts"].get("round", 0)) + 1
        counts = {"k": k, "round": round_number, "from_run": self.from_run, "carried": len(carried.ids),
                  "previous_weights": [round(float(w), 6) for w in weights],
                  "cluster_feedback": [None if np.isnan(s) else round(float(s), 6) for s in cluster_scores],
                  "feedback_samples": int(with_feedback.sum()),
                  "cluster_sizes": previous["counts"].get("cluster_sizes")}
        return self._draw(pool, budget, labels, new_weights, picked_before, counts, carried)
