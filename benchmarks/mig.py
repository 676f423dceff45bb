"""MIG benchmark: the fast mode on a pool shaped like MIG's Tulu3 pool, and fast against dense.

    python benchmarks/mig.py                       # 939,000 -> 50,000; then 50,000 -> 5,000 fast vs dense
    python benchmarks/mig.py --samples 200000 --budget 10000 --small 20000 --small-budget 2000   # quicker

The pool: `--samples` samples over the 4,531 InsTag tags of MIG's valid_tags.json, 1 + Poisson(3.4)
tags each (about 4.3 distinct), drawn with a Zipf-like skew (tag of rank r has weight (r + 10)^-1.1),
DEITA-like scores q x c with q, c uniform in [1, 6] (so in 1-36). It is written to a DuckDB store as
the mig-pool dialect would (labels of origin instag, scores `deita`, provenance in input order), and
selected with `MIGSelector` through `run_selection`, as `curate select mig --quality-score deita`:
loading the pool from the store, the label graph, the greedy, and writing the selections are timed.
The label strings are embedded once beforehand with the real MiniLM model (cached in the store, as a
re-run finds them), and that time is printed apart.

Each selection runs in a child process of its own, so its peak RSS (VmHWM) is its own.
Targets on 2 CPU cores: fast 939K -> 50K in <= 5 min and <= 4 GB; fast >= 20x dense where both run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from curate.labels.graph import save_label_vectors  # noqa: E402
from curate.models.embed import encode_texts  # noqa: E402
from curate.selectors import Pool, run_selection  # noqa: E402
from curate.selectors.mig import MIGSelector, compare_orders  # noqa: E402
from curate.store import Store  # noqa: E402

VALID_TAGS = ROOT.parent / "shared" / "data" / "mig" / "valid_tags.json"
TIME_TARGET, RSS_TARGET, RATIO_TARGET = 300.0, 4e9, 20.0


def synthetic_pool(n: int, n_tags: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, tag indices) of each (sample, tag) pair, and one score per sample."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / (np.arange(n_tags) + 10.0) ** 1.1
    weights = weights[rng.permutation(n_tags)]
    drawn = 1 + rng.poisson(3.4, n)
    rows = np.repeat(np.arange(n, dtype=np.int64), drawn)
    tags = rng.choice(n_tags, size=len(rows), p=weights / weights.sum())
    pairs = np.unique(rows * n_tags + tags)
    scores = rng.uniform(1, 6, n) * rng.uniform(1, 6, n)
    return pairs // n_tags, pairs % n_tags, scores


def build_store(path: Path, n: int, tags: list[str], seed: int = 0) -> Store:
    """A store holding the synthetic pool as the mig-pool dialect would have ingested it."""
    rows, tag_index, scores = synthetic_pool(n, len(tags), seed)
    store = Store(path)
    ids = pa.array([f"{i:032x}" for i in np.random.default_rng(seed + 1).permutation(n)], pa.string())
    with store.transaction() as con:
        con.register("ids", pa.table({"sample_id": ids, "row_number": pa.array(np.arange(1, n + 1))}))
        con.execute("INSERT INTO samples_base SELECT sample_id, 'instruction', "
                    "[{'role': 'user', 'content': 'prompt ' || row_number}, {'role': 'assistant', 'content': 'reply'}], "
                    "NULL, NULL, current_timestamp FROM ids")
        con.execute("INSERT INTO sources (source_id, name, uri, dialect, status, started_at) "
                    "VALUES ('synthetic', 'tulu3-like', 'tulu3-like.jsonl', 'mig-pool', 'complete', current_timestamp)")
        con.execute("INSERT INTO sample_sources SELECT sample_id, 'synthetic', row_number FROM ids")
        con.register("pairs", pa.table({"sample_id": ids.take(pa.array(rows)),
                                        "label": pa.array(tags, pa.string()).take(pa.array(tag_index))}))
        con.execute("INSERT INTO labels BY NAME SELECT sample_id, label, 'instag' AS origin FROM pairs")
        con.register("deita", pa.table({"sample_id": ids, "value": pa.array(scores)}))
        con.execute("INSERT INTO scores BY NAME SELECT sample_id, 'deita' AS scorer, value, current_timestamp "
                    "AS created_at FROM deita")
    return store


def measure_child(db: str, budget: int, impl: str, sim_threshold: float) -> None:
    """In a child process: one selection, then its wall time and peak RSS as JSON on stdout."""
    store = Store(db)
    started = time.perf_counter()
    pool = Pool.from_store(store)
    selector = MIGSelector(quality_score="deita", label_vocab=str(VALID_TAGS), sim_threshold=sim_threshold, impl=impl)
    run_id = run_selection(store, selector, pool, budget)
    seconds = time.perf_counter() - started
    with store.connect() as con:
        counts = json.loads(con.execute("SELECT counts FROM runs WHERE run_id = ?", [run_id]).fetchone()[0])
    print(json.dumps({"seconds": seconds, "peak_rss": peak_rss(), "run_id": run_id, "counts": counts}))


def peak_rss() -> int:
    """This process's peak RSS since it started (VmHWM; getrusage's maxrss would count the parent's
    memory at fork)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def select_in_child(db: Path, budget: int, impl: str, sim_threshold: float) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(db), str(budget), impl, str(sim_threshold)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def selected_order(store: Store, run_id: str) -> list[str]:
    with store.connect() as con:
        return [r[0] for r in con.execute("SELECT sample_id FROM selections WHERE run_id = ? AND selected ORDER BY rank",
                                          [run_id]).fetchall()]


def gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=939_000)
    parser.add_argument("--budget", type=int, default=50_000)
    parser.add_argument("--small", type=int, default=50_000, help="pool size for fast against dense")
    parser.add_argument("--small-budget", type=int, default=5_000)
    parser.add_argument("--sim-threshold", type=float, default=0.9, help="tau (0.9, MIG's default, leaves MiniLM's "
                                                                          "tag graph with 32 edges; 0.6 gives ~14,000)")
    parser.add_argument("--workdir", default=None, help="where the stores go (default: a temporary folder)")
    args = parser.parse_args()
    tags = json.loads(VALID_TAGS.read_text())
    cores = len(os.sched_getaffinity(0))
    print(f"MIG benchmark: {cores} CPU cores, load average {os.getloadavg()[0]:.1f} at start; "
          f"{len(tags):,} tags from {VALID_TAGS.name}; sim threshold {args.sim_threshold}")

    started = time.perf_counter()
    vectors = encode_texts(tags)        # the real MiniLM on the real tag strings; each store caches them
    print(f"tags embedded with all-MiniLM-L6-v2 in {time.perf_counter() - started:.1f}s (not counted below: "
          "a store keeps them for every later run)")

    with tempfile.TemporaryDirectory(dir=args.workdir) as folder:
        results = {}
        for name, n, budget in (("big", args.samples, args.budget), ("small", args.small, args.small_budget)):
            started = time.perf_counter()
            store = build_store(Path(folder) / f"{name}.duckdb", n, tags)
            with store.connect() as con:
                pairs = con.execute("SELECT count(*) FROM labels").fetchone()[0]
            save_label_vectors(store, tags, None, vectors)
            print(f"\n{name} pool: {n:,} samples, {pairs / n:.2f} tags per sample; store built in "
                  f"{time.perf_counter() - started:.1f}s")
            results[name] = {"store": store, "fast": select_in_child(store.path, budget, "fast", args.sim_threshold), "budget": budget}
            fast = results[name]["fast"]
            print(f"  fast:  {n:,} -> {budget:,} in {fast['seconds']:.1f}s, peak RSS {gb(fast['peak_rss'])} "
                  f"(phases {fast['counts']['seconds']}, {fast['counts']['evaluations']:,} gain evaluations, "
                  f"{fast['counts']['labels']:,} labels, {fast['counts']['edges']:,} edges)")

        small = results["small"]
        dense = select_in_child(small["store"].path, small["budget"], "dense", args.sim_threshold)
        ratio = dense["seconds"] / small["fast"]["seconds"]
        print(f"  dense: {args.small:,} -> {args.small_budget:,} in {dense['seconds']:.1f}s, peak RSS "
              f"{gb(dense['peak_rss'])} (phases {dense['counts']['seconds']})")
        store = small["store"]
        pool = Pool.from_store(store)
        problem = MIGSelector(quality_score="deita", label_vocab=str(VALID_TAGS),
                              sim_threshold=args.sim_threshold).problem(pool)
        comparison = compare_orders(problem.rows(pool, selected_order(store, dense["run_id"])),
                                    problem.rows(pool, selected_order(store, small["fast"]["run_id"])),
                                    problem.vectors, problem.propagation, problem.phi, rtol=1e-4)
        print(f"  selections, dense against fast: {comparison.describe()}")

        big = results["big"]["fast"]
        print("\ntargets (2 CPU cores):")
        print(f"  fast {args.samples:,} -> {args.budget:,} in <= {TIME_TARGET:.0f}s: {big['seconds']:.1f}s  "
              f"{verdict(big['seconds'] <= TIME_TARGET)}")
        print(f"  fast peak RSS <= {gb(RSS_TARGET)}: {gb(big['peak_rss'])}  {verdict(big['peak_rss'] <= RSS_TARGET)}")
        print(f"  fast >= {RATIO_TARGET:.0f}x faster than dense ({args.small:,} -> {args.small_budget:,}): "
              f"{ratio:.1f}x  {verdict(ratio >= RATIO_TARGET)}")
        print(f"  same selection as dense (up to floating-point ties): {comparison.equal_up_to_ties}  "
              f"{verdict(comparison.equal_up_to_ties)}")


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--child":
        measure_child(sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5]))
    else:
        main()
