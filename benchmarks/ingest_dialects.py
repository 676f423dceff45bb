"""Ingest's fast path against the adapter, per dialect and file form, in one process.

Inputs are written to a temp dir from ../shared/data/instruct, every row unique (a copy number
appended to its first turn):
- `messages` JSON Lines: T0 as OpenAI messages with an `id` (3 copies, 141K rows);
- `sharegpt` JSON Lines: LIMA train as ShareGPT turns with an `id` (40 copies, 41K rows of 2.9 KB);
- the same ShareGPT rows as one pretty-printed `.json` array;
- `lima` JSON Lines: LIMA train as shipped, with its `source` (40 copies).

Each is ingested into a fresh store through the fast path (the default) and with `fast=False`
(every row through its dialect's adapter), twice each, alternating, and the better rate of each is
printed; both must land the same samples. The fast path should be
faster on every form; there is no fixed target.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import measure  # noqa: E402

from curate.ingest import ingest  # noqa: E402
from curate.store import Store  # noqa: E402

INSTRUCT = Path(__file__).resolve().parents[2] / "shared" / "data" / "instruct"
T0_COPIES, LIMA_COPIES = 3, 40


def t0_as_messages() -> Iterator[dict]:
    for copy in range(T0_COPIES):
        for path in sorted((INSTRUCT / "t0_train_50k").glob("*.jsonl")):
            for line in path.read_bytes().splitlines():
                record = orjson.loads(line)
                yield {"id": f"{path.stem}-{copy}", "messages": [
                    {"role": "user", "content": f"{record['prompt']} [copy {copy}]"},
                    {"role": "assistant", "content": record["completion"].removesuffix("<|endoftext|>")}]}


def lima_copies() -> Iterator[dict]:
    lines = (INSTRUCT / "lima_train.jsonl").read_bytes().splitlines()
    for copy in range(LIMA_COPIES):
        for line in lines:
            record = orjson.loads(line)
            record["conversations"][0] += f" [copy {copy}]"
            yield record


def lima_as_sharegpt() -> Iterator[dict]:
    for index, record in enumerate(lima_copies()):
        yield {"id": f"lima-{index}", "conversations": [
            {"from": ("human", "gpt")[turn % 2], "value": text} for turn, text in enumerate(record["conversations"])]}


def write_jsonl(path: Path, records: Iterator[dict]) -> Path:
    with open(path, "wb") as out:
        out.writelines(orjson.dumps(record) + b"\n" for record in records)
    return path


def main() -> None:
    if not INSTRUCT.is_dir():
        print(f"skipped: {INSTRUCT} is absent")
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        inputs = {
            "messages, JSON Lines (T0)": write_jsonl(tmp / "t0_messages.jsonl", t0_as_messages()),
            "sharegpt, JSON Lines (LIMA)": write_jsonl(tmp / "lima_sharegpt.jsonl", lima_as_sharegpt()),
            "sharegpt, .json array (LIMA)": tmp / "lima_sharegpt.json",
            "lima, JSON Lines (LIMA)": write_jsonl(tmp / "lima.jsonl", lima_copies()),
        }
        inputs["sharegpt, .json array (LIMA)"].write_bytes(
            orjson.dumps(list(lima_as_sharegpt()), option=orjson.OPT_INDENT_2))
        ingest(Store(tmp / "warm-up.duckdb"), [str(INSTRUCT / "lima_test.jsonl")])   # imports, first connect
        for name, path in inputs.items():
            rates, samples = {True: 0.0, False: 0.0}, {}
            for attempt, fast in enumerate((True, False, True, False)):   # the better of two runs each
                store = Store(tmp / f"{path.name}-{attempt}.duckdb")
                with measure(name) as phase:
                    (report,) = ingest(store, [str(path)], fast=fast)
                rates[fast] = max(rates[fast], report.counts.read / phase.seconds)
                samples[fast] = store.query("SELECT count(*) AS n, min(sample_id) AS first FROM samples").to_pylist()
            assert samples[True] == samples[False], f"{name}: the two paths landed different samples"
            print(f"{name}: {report.counts.read:,} rows, fast path {rates[True]:,.0f} rows/s, "
                  f"adapter {rates[False]:,.0f} rows/s: {rates[True] / rates[False]:.2f}x")


if __name__ == "__main__":
    main()
