"""Embedding throughput: `embed_samples` (what `curate embed` runs) against bare
`SentenceTransformer.encode` on the same 10,000 real texts, in one process.

Texts: the prompt view of 10,000 samples ingested from ../shared/data/instruct (LIMA, ShareGPT,
Alpaca-zh, self-instruct seeds, then T0 files in name order), the first 10,000 by sample id.
Baseline: the packaged all-MiniLM-L6-v2 encoding those texts (batch 64, normalised), nothing else.
curate: reading the texts from the store, counting truncations, encoding, writing the rows.
The model is loaded and warmed up before either is timed. Then `embed_samples` again on the same
store, where everything is cached.

Targets: overhead <= 10% (curate's texts/s at least 0.9x the baseline's); the cached run >= 50x faster.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
from _measure import mb, measure

from curate.ingest import ingest
from curate.models.embed import DEFAULT_MODEL, embed_samples, fetch_texts, load_model
from curate.store import Store

INSTRUCT = ROOT.parent / "shared" / "data" / "instruct"
FIRST = ["lima_train.jsonl", "sharegpt_dummy.json", "alpaca_zh_10000.json", "self_instruct_seed_tasks.jsonl"]


def fill(store: Store, texts: int) -> str:
    """Ingest real data until the store has `texts` samples; a predicate picking exactly that many."""
    t0 = sorted(str(path) for path in (INSTRUCT / "t0_train_50k").glob("*.jsonl"))
    groups = [[str(INSTRUCT / name) for name in FIRST]] + [t0[i:i + 20] for i in range(0, len(t0), 20)]
    for group in groups:
        ingest(store, group)
        with store.connect() as con:
            if con.execute("SELECT count(*) FROM samples").fetchone()[0] >= texts:
                break
    return f"sample_id IN (SELECT sample_id FROM samples ORDER BY sample_id LIMIT {texts})"


@contextmanager
def cpu_seconds(into: dict, phase) -> Iterator[None]:
    started = time.process_time()
    yield
    into[phase.name] = time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    if not INSTRUCT.is_dir():
        sys.exit(f"real data not available: {INSTRUCT} is absent")

    with tempfile.TemporaryDirectory() as folder:
        store = Store(Path(folder) / "bench.duckdb")
        where = fill(store, args.texts)
        with store.connect() as con:
            ids = [row[0] for row in con.execute(f"SELECT sample_id FROM samples WHERE {where} ORDER BY 1").fetchall()]
        texts = fetch_texts(store, ids, "prompt")
        encoder = load_model()
        encoder.encode(texts[:256], batch_size=args.batch_size, normalize_embeddings=True)   # warm up
        print(f"{len(texts):,} texts from {INSTRUCT}, prompt view, {sum(map(len, texts)) / len(texts):,.0f} "
              f"characters on average; model {DEFAULT_MODEL}, device {encoder.device}, {torch.get_num_threads()} torch threads")

        cpu = {}       # CPU seconds of this process per phase: steadier than wall time on a shared machine
        with measure("bare encode") as bare, cpu_seconds(cpu, bare):
            encoder.encode(texts, batch_size=args.batch_size, normalize_embeddings=True, convert_to_numpy=True,
                           show_progress_bar=False)
        with measure("embed_samples") as ours, cpu_seconds(cpu, ours):
            report = embed_samples(store, where=where, batch_size=args.batch_size, progress=False)
        with measure("embed_samples, cached") as cached, cpu_seconds(cpu, cached):
            again = embed_samples(store, where=where, batch_size=args.batch_size, progress=False)
        assert report.computed == len(texts) and again.computed == 0

    print(f"{'phase':<24}{'seconds':>10}{'texts/s':>12}{'CPU s':>10}{'peak RSS':>12}")
    for phase in (bare, ours, cached):
        print(f"{phase.name:<24}{phase.seconds:>10.2f}{len(texts) / phase.seconds:>12,.0f}{cpu[phase.name]:>10.1f}"
              f"{mb(phase.peak_rss):>12}")
    print(f"CPU time of embed_samples over bare encode: {cpu[ours.name] / cpu[bare.name] - 1:+.1%}")
    overhead = ours.seconds / bare.seconds - 1
    speedup = ours.seconds / cached.seconds
    print(f"overhead of embed_samples over bare encode: {overhead:+.1%} (target <= +10%): "
          f"{'MET' if overhead <= 0.10 else 'NOT MET'}")
    print(f"cached run: {speedup:,.0f}x faster than the first (target >= 50x): "
          f"{'MET' if speedup >= 50 else 'NOT MET'}")
    print(f"{report.truncated:,} of {len(texts):,} texts were truncated to the model's limit")


if __name__ == "__main__":
    main()
