"""RV-Syn throughput: sandbox executions per second on graph programs, and --no-llm problems per second.

Programs: computational graphs composed by the typed composer from the starter library (k = 2..4
functions, the code `synth generate` executes). Measured in one process, one after the other:

- pool: `SandboxPool(workers=2)` (warm) running all programs with `map`, two at a time;
- baseline: one fresh, equally hardened worker process per program (start, hello, run, kill), on a
  subset, programs/s compared;
- `synth generate --no-llm`: problems kept per second into a fresh store (sampling, composing,
  executing, rendering, storing), end to end.

Target: >= 200 executions/s for the pool on 2 cores.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import mb, measure

from curate.store import Store
from curate.synth.compose import TypedComposer
from curate.synth.generate import Synthesiser
from curate.synth.library import starter_functions
from curate.synth.sandbox import SandboxPool

PROGRAMS = 2_000
BASELINE_PROGRAMS = 100
PROBLEMS = 2_000


def graph_programs(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    library = starter_functions()
    programs = []
    while len(programs) < count:
        composed = TypedComposer().compose(rng.sample(library, rng.randint(2, 4)), rng)
        if not isinstance(composed, str):
            programs.append(composed.program())
    return programs


def main() -> None:
    print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}")
    programs = graph_programs(PROGRAMS)

    with SandboxPool(workers=2) as pool:
        pool.map(programs[:20])                       # start and warm both workers
        with measure("pool") as phase:
            results = pool.map(programs)
        ok = sum(r.ok for r in results)
        pool_rate = len(programs) / phase.seconds
        print(f"pool (2 workers): {len(programs):,} graph programs in {phase.seconds:.2f}s = {pool_rate:,.0f} "
              f"executions/s ({ok:,} ok, the rest raised by design: e.g. out-of-domain inputs)")

    started = time.perf_counter()
    for code in programs[:BASELINE_PROGRAMS]:
        with SandboxPool(workers=1) as fresh:
            fresh.execute(code)
    fresh_rate = BASELINE_PROGRAMS / (time.perf_counter() - started)
    print(f"baseline (a fresh hardened process per program): {BASELINE_PROGRAMS} programs = {fresh_rate:,.1f} "
          f"executions/s")
    print(f"  ratio: pool is {pool_rate / fresh_rate:,.1f}x the fresh-process baseline")

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "synth.duckdb")
        with SandboxPool(workers=2) as pool:
            Synthesiser(20, seed=1).run(store, pool=pool)       # library install, warm-up
            with measure("generate") as phase:
                report = Synthesiser(PROBLEMS, seed=2).run(store, pool=pool)
        print(f"synth generate --no-llm: {report.kept:,} problems kept of {report.attempts:,} attempts in "
              f"{phase.seconds:.1f}s = {report.kept / phase.seconds:,.0f} problems/s, peak RSS {mb(phase.peak_rss)}")

    print("targets:")
    print(f"  pool >= 200 executions/s on 2 cores: {pool_rate:,.0f} -> {'met' if pool_rate >= 200 else 'NOT met'}")


if __name__ == "__main__":
    main()
