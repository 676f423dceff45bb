"""k-means / kMQ selection and the DEITA Repr filter at scale, in one process.

1. kMQ on 1,000,000 x 384 random unit vectors (float32), k = 1,024, budget 50,000, random quality
   scores: k-means with faiss and with scikit-learn's MiniBatchKMeans (the same training sample,
   iterations and seed), then allocation and the within-cluster draws. Wall time and peak RSS each.
   Target: <= 120 s on 2 cores for the faster backend.
2. The DEITA Repr filter on 100,000 x 384 vectors in near-duplicate groups (fewer groups than the
   budget, so the walk covers every candidate: its worst case), budget 10,000, threshold 0.9.
   Baseline: the reference's one-candidate-at-a-time walk, timed on the first BASELINE_ROWS
   candidates, where both must keep the same samples. Target: <= 60 s for the full filter.

Usage: python benchmarks/kmeans.py [--n 1000000] [--k 1024] [--budget 50000] [--deita-n 100000]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import mb, measure

from curate.selectors.deita import repr_filter
from curate.selectors.kmeans import allocate, draw_within_clusters, kmeans

KMEANS_TARGET_S = 120.0
DEITA_TARGET_S = 60.0
BASELINE_ROWS = 10_000


def cpu_seconds() -> float:
    """User + system CPU time of this process, all threads (on a busy machine, wall time overstates)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def kmq(vectors: np.ndarray, scores: np.ndarray, k: int, budget: int, backend: str) -> dict:
    labels, _ = kmeans(vectors, k, seed=0, backend=backend)
    sizes = np.bincount(labels, minlength=k)
    quotas = allocate(budget, sizes / sizes.sum(), sizes)
    picks = draw_within_clusters(labels, quotas, np.ones(len(vectors), bool), np.random.default_rng(0), scores, 1.0)
    return {"picked": len(picks), "clusters": int((sizes > 0).sum()), "largest": int(sizes.max())}


def near_duplicate_groups(n: int, dim: int, groups: int, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = unit_vectors(groups, dim, seed + 1)
    vectors = centres[rng.integers(0, groups, n)] + rng.standard_normal((n, dim), dtype=np.float32) * (noise / dim ** 0.5)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def reference_walk(vectors: np.ndarray, threshold: float, budget: int) -> list[int]:
    kept = [0]
    kept_vectors = np.empty((budget, vectors.shape[1]), dtype=np.float32)
    kept_vectors[0] = vectors[0]
    for i in range(1, len(vectors)):
        if len(kept) >= budget:
            break
        if np.max(kept_vectors[:len(kept)] @ vectors[i]) > threshold:
            continue
        kept_vectors[len(kept)] = vectors[i]
        kept.append(i)
    return kept


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--k", type=int, default=1024)
    parser.add_argument("--budget", type=int, default=50_000)
    parser.add_argument("--deita-n", type=int, default=100_000)
    parser.add_argument("--deita-budget", type=int, default=10_000)
    args = parser.parse_args()

    print(f"== kMQ: {args.n:,} x {args.dim} unit vectors, k = {args.k:,}, budget {args.budget:,}")
    vectors = unit_vectors(args.n, args.dim, seed=0)
    scores = np.random.default_rng(1).normal(size=args.n)
    results = {}
    for backend in ("faiss", "sklearn"):
        cpu = cpu_seconds()
        with measure(backend) as phase:
            outcome = kmq(vectors, scores, args.k, args.budget, backend)
        cpu = cpu_seconds() - cpu
        results[backend] = phase
        print(f"{backend:8s} {phase.seconds:7.1f} s wall, {cpu:7.1f} s CPU   peak RSS {mb(phase.peak_rss)} (+{mb(phase.growth)} over the "
              f"data)   picked {outcome['picked']:,} from {outcome['clusters']:,} clusters "
              f"(largest {outcome['largest']:,})", flush=True)
        assert outcome["picked"] == args.budget
    fastest = min(results, key=lambda name: results[name].seconds)
    print(f"faiss / sklearn wall time: {results['faiss'].seconds / results['sklearn'].seconds:.2f}x")
    met = results[fastest].seconds <= KMEANS_TARGET_S
    print(f"target <= {KMEANS_TARGET_S:.0f} s for the faster ({fastest}, {results[fastest].seconds:.1f} s): "
          f"{'MET' if met else 'NOT MET'}")
    del vectors, scores

    print(f"\n== DEITA Repr filter: {args.deita_n:,} x {args.dim}, budget {args.deita_budget:,}, threshold 0.9")
    groups = int(args.deita_budget * 0.95)
    candidates = near_duplicate_groups(args.deita_n, args.dim, groups, noise=0.3, seed=2)
    head = candidates[:BASELINE_ROWS]
    started = time.perf_counter()
    expected = reference_walk(head, 0.9, args.deita_budget)
    baseline_s = time.perf_counter() - started
    started = time.perf_counter()
    chunked = repr_filter(head, 0.9, args.deita_budget)
    chunked_s = time.perf_counter() - started
    assert chunked.kept.tolist() == expected, "the chunked filter must keep what the reference walk keeps"
    print(f"first {BASELINE_ROWS:,} candidates: reference walk {baseline_s:.2f} s, chunked {chunked_s:.2f} s "
          f"({baseline_s / chunked_s:.1f}x), same {len(expected):,} kept")
    cpu = cpu_seconds()
    with measure("deita") as phase:
        result = repr_filter(candidates, 0.9, args.deita_budget)
    cpu = cpu_seconds() - cpu
    walked = int(np.sum(result.blocker != -2))
    print(f"full filter {phase.seconds:.1f} s wall, {cpu:.1f} s CPU   peak RSS {mb(phase.peak_rss)}   kept {len(result.kept):,}, "
          f"walked {walked:,} of {args.deita_n:,} candidates")
    met_deita = phase.seconds <= DEITA_TARGET_S
    print(f"target <= {DEITA_TARGET_S:.0f} s: {'MET' if met_deita else 'NOT MET'}")


if __name__ == "__main__":
    main()
