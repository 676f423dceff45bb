"""Merge duplicate library functions, recording each merge in `synth_merges`.

`merge_identical`: functions with the same canonical AST (canonical.py) merge into the earliest
library member (starter functions first). `merge_equivalent` (optional, `--behavioural`): an
LLM-written member with the same parameter kinds as an earlier member, returning the same outputs on
the same random inputs, merges into it; the inputs and outputs are recorded.

Starter functions are never merged into each other: they are curated, and `multiply`, `wages` and
`distance_travelled` share a body but read as different problems (their templates differ). An LLM
function identical to a starter function merges into it. Merged functions stay in `synth_functions` with `merged_into` set,
so their seeds' co-occurrences count for the member.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass

import orjson

from curate.store import Store
from curate.synth.compose import build_program, draw, typed
from curate.synth.library import LibraryFunction, load_functions
from curate.synth.sandbox import SandboxPool, default_pool, to_json


@dataclass
class Merge:
    kept_id: str
    merged_id: str
    method: str
    canonical_hash: str | None = None
    details: dict | None = None


def _mergeable(other: LibraryFunction) -> bool:
    return other.origin != "starter"


def _record(store: Store, merges: list[Merge], run_id: str | None) -> None:
    if not merges:
        return
    with store.transaction() as con:
        for m in merges:
            con.execute("UPDATE synth_functions SET merged_into = ? WHERE function_id = ?", [m.kept_id, m.merged_id])
            # functions already merged into the one now merged away follow it
            con.execute("UPDATE synth_functions SET merged_into = ? WHERE merged_into = ?", [m.kept_id, m.merged_id])
            con.execute("INSERT INTO synth_merges VALUES (?, ?, ?, ?, ?, ?, current_timestamp)",
                        [run_id, m.kept_id, m.merged_id, m.method, m.canonical_hash,
                         orjson.dumps(m.details).decode() if m.details else None])


def merge_identical(store: Store, run_id: str | None = None) -> list[Merge]:
    """Merge members that share a canonical AST; returns the merges made."""
    groups: dict[str, list[LibraryFunction]] = defaultdict(list)
    for function in load_functions(store):          # starter functions first, then in insertion order
        groups[function.canonical_hash].append(function)
    merges = [Merge(group[0].function_id, other.function_id, "ast", digest)
              for digest, group in groups.items() for other in group[1:] if _mergeable(other)]
    _record(store, merges, run_id)
    return merges


def _probe_program(function: LibraryFunction, inputs: list[list]) -> str:
    solution = ("def solution():\n    outputs = []\n"
                f"    for args in {inputs!r}:\n"
                "        try:\n"
                f"            outputs.append({function.name}(*args))\n"
                "        except Exception:\n"
                "            outputs.append(None)\n"
                "    return outputs\n")
    return build_program([(function, function.name)], solution)


def _fingerprint(outputs: list) -> tuple | None:
    key = []
    for value in outputs:
        if value is None:
            key.append(None)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            key.append(round(float(value), 9))
        else:
            key.append(repr(value))
    return tuple(key)


def merge_equivalent(store: Store, run_id: str | None = None, *, samples: int = 8, min_valid: int = 4,
                     seed: int = 0, pool: SandboxPool | None = None) -> list[Merge]:
    """Merge members with equal parameter kinds and equal outputs on `samples` random inputs."""
    pool = pool or default_pool()
    by_signature: dict[tuple, list[LibraryFunction]] = defaultdict(list)
    for function in load_functions(store):
        if typed(function):
            by_signature[(tuple(p.kind for p in function.params), function.returns)].append(function)
    merges = []
    for signature, group in by_signature.items():
        if len(group) < 2:
            continue
        rng = random.Random(f"{seed}:{signature}")
        inputs = [[draw(p, rng) for p in group[0].params] for _ in range(samples)]
        results = pool.map([_probe_program(f, inputs) for f in group])
        members: dict[tuple, LibraryFunction] = {}
        for function, result in zip(group, results):
            if not result.ok or not isinstance(result.value, list):
                continue
            key = _fingerprint(result.value)
            if sum(v is not None for v in key) < min_valid:
                continue
            if key in members and _mergeable(function):
                merges.append(Merge(members[key].function_id, function.function_id, "behaviour",
                                    details={"inputs": inputs, "outputs": to_json(result.value)}))
            else:
                members.setdefault(key, function)
    _record(store, merges, run_id)
    return merges
