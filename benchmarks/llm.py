"""LLM throughput with the small real model (SmolLM2-135M): the `openai` backend against a local
`curate serve` at concurrency 1, 8 and 32, and the `transformers` backend batched against
one request at a time, in one run.

Requests: the first N GSM8K test questions (../shared/data/math), greedy, at most M new tokens each;
the same requests at every setting. Tokens are the generated tokens the backends report.

Targets (ours; the issue sets none): concurrency 8 gives >= 2x the requests/s of concurrency 1 (the
server batches requests that are in flight together), and the transformers backend batched gives
>= 2x the requests/s of one request at a time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from curate.models.llm import ChatRequest, get_backend
from tests.servers import local_openai_server

MATH = ROOT.parent / "shared" / "data" / "math"
MODEL = "smollm2-135m"


def questions(n: int, max_tokens: int) -> list[ChatRequest]:
    with open(MATH / "gsm8k_test.jsonl") as lines:
        texts = [json.loads(line)["question"] for _, line in zip(range(n), lines)]
    return [ChatRequest(({"role": "user", "content": text},), max_tokens=max_tokens) for text in texts]


def timed(name: str, run, requests: list[ChatRequest]) -> dict:
    started = time.perf_counter()
    responses = run(requests)
    seconds = time.perf_counter() - started
    failed = [r.error for r in responses if not r.ok]
    if failed:
        sys.exit(f"{name}: {len(failed)} requests failed, e.g. {failed[0]}")
    tokens = sum(c.tokens for r in responses for c in r.choices)
    row = {"name": name, "seconds": seconds, "requests/s": len(requests) / seconds, "tokens/s": tokens / seconds,
           "texts": [r.text for r in responses]}
    print(f"{name:<36}{seconds:>9.1f}{row['requests/s']:>12.2f}{row['tokens/s']:>11.1f}", flush=True)
    return row


def verdict(label: str, ratio: float, target: float) -> None:
    print(f"{label}: {ratio:.2f}x (target >= {target:g}x): {'MET' if ratio >= target else 'NOT MET'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()
    if not MATH.is_dir():
        sys.exit(f"real data not available: {MATH} is absent")
    requests = questions(args.requests, args.max_tokens)
    print(f"{len(requests)} GSM8K questions, greedy, <= {args.max_tokens} new tokens, model {MODEL}")
    print(f"{'setting':<36}{'seconds':>9}{'requests/s':>12}{'tokens/s':>11}")

    with local_openai_server(MODEL, max_batch=32) as base_url:
        remote = {c: timed(f"openai, concurrency {c}",
                           get_backend("openai", MODEL, base_url=base_url, concurrency=c).generate, requests)
                  for c in (1, 8, 32)}
    batched = get_backend("transformers", MODEL, batch_size=32)
    batched.generate(requests[:2])                                  # load the model before timing
    local = timed("transformers, batches of 32", batched.generate, requests)
    single = get_backend("transformers", MODEL, batch_size=1)
    alone = timed("transformers, one at a time", single.generate, requests)

    same = sum(a == b for a, b in zip(local["texts"], alone["texts"]))
    print(f"greedy texts equal batched and alone: {same} of {len(requests)} (left padding may move a near tie)")
    verdict("openai backend, concurrency 8 over 1", remote[8]["requests/s"] / remote[1]["requests/s"], 2)
    print(f"openai backend, concurrency 32 over 1: {remote[32]['requests/s'] / remote[1]['requests/s']:.2f}x")
    verdict("transformers backend, batched over one at a time", local["requests/s"] / alone["requests/s"], 2)


if __name__ == "__main__":
    main()
