"""MCTS difficulty throughput: concurrent searches against the one-at-a-time loop, in one process.

Both run the same search (`curate.mcts.SearchDriver`, rule judge) with the same model on the same
GSM8K test problems (../shared/data/math/gsm8k_test.jsonl, from the first): the baseline with
concurrency 1 (the reference's loop: one problem, one request at a time), the concurrent search with
`--concurrency` problems in flight (their requests sent to the backend together). Each gets a fresh
store, so neither is answered by the other's response cache. The baseline, being slow, runs on the
first `--sequential` problems only; problems per minute are compared.

Defaults: SmolLM2-135M on the CPU (transformers backend, batch size = concurrency), 2 iterations of
at most 2 steps of at most 32 tokens. Target: >= 5x the baseline's problems per minute at 32
concurrent problems. `--no-prefix-cache` runs the transformers backend's plain path (no shared-prefix
reuse; each prompt prefilled n times). On a GPU: `--backend vllm --model <a small math model>
--max-new-tokens 2048`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import measure

from curate.mcts import Problem, RuleJudge, Sampling, SearchConfig, SearchDriver
from curate.models.llm import ChatRequest, get_backend
from curate.store import Store

GSM8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "math" / "gsm8k_test.jsonl"
TARGET = 5.0


def load(n: int) -> list[Problem]:
    from curate.answers import gsm8k_gold

    problems = []
    with open(GSM8K) as lines:
        for index, line in zip(range(n), lines):
            record = json.loads(line)
            problems.append(Problem(f"gsm8k-{index}", record["question"], gsm8k_gold(record["answer"])))
    return problems


def search(args, problems: list[Problem], concurrency: int, folder: Path) -> dict:
    options = {"batch_size": concurrency, "prefix_cache": args.prefix_cache} if args.backend == "transformers" else {}
    policy = get_backend(args.backend, args.model, store=Store(folder / f"c{concurrency}.duckdb"), **options)
    driver = SearchDriver(policy, RuleJudge(),
                          SearchConfig(max_iterations=args.max_iterations, max_steps=args.max_steps),
                          Sampling(max_new_tokens=args.max_new_tokens), concurrency=concurrency)
    with measure(f"concurrency {concurrency}") as phase:
        results = list(driver.run(problems))
    failed = [r.error for r in results if r.error]
    if failed:
        raise SystemExit(f"{len(failed)} searches failed, e.g. {failed[0]}")
    return {"problems": len(results), "seconds": phase.seconds, "requests": driver.requests,
            "sequences": sum(r.sequences for r in results), "tokens": sum(r.generated_tokens for r in results),
            "solved": sum(r.outcome.solved for r in results), "per_minute": 60 * len(results) / phase.seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="transformers")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--sequential", type=int, default=4, help="problems the one-at-a-time baseline runs")
    parser.add_argument("--max-iterations", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--no-prefix-cache", dest="prefix_cache", action="store_false",
                        help="transformers: prefill every prompt whole, n times over (the plain path)")
    args = parser.parse_args()
    if not GSM8K.is_file():
        raise SystemExit(f"{GSM8K} is absent: the benchmark reads ../shared/data")
    problems = load(args.concurrency)
    # load the model (once per process) outside the timings
    get_backend(args.backend, args.model).generate([ChatRequest(({"role": "user", "content": "Hi"},), max_tokens=2)])
    with tempfile.TemporaryDirectory() as folder:
        base = search(args, problems[:args.sequential], 1, Path(folder))
        fast = search(args, problems, args.concurrency, Path(folder))
    print(f"{args.backend} {args.model}: {args.max_iterations} iterations, <= {args.max_steps} steps of "
          f"<= {args.max_new_tokens} tokens; rule judge"
          + (f"; prefix cache {'on' if args.prefix_cache else 'off'}" if args.backend == "transformers" else ""))
    for name, row in (("one at a time", base), (f"{args.concurrency} concurrent", fast)):
        print(f"  {name:>14}: {row['problems']:3d} problems in {row['seconds']:7.1f} s = {row['per_minute']:6.2f} "
              f"problems/min ({row['solved']} solved; {row['requests']} requests, {row['sequences']} steps, "
              f"{row['tokens']} tokens = {row['tokens'] / row['seconds']:.1f} tokens/s)")
    ratio = fast["per_minute"] / base["per_minute"]
    print(f"  speed-up: {ratio:.2f}x problems/min (target >= {TARGET:.0f}x at {args.concurrency} concurrent): "
          f"{'met' if ratio >= TARGET else 'NOT met'}")


if __name__ == "__main__":
    main()
