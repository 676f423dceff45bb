"""Pick the k functions of one problem from the library graph.

- `cooccurrence`: a random walk over co-occurrence edges, each step to a neighbour with probability
  proportional to the edge's count, collecting distinct functions (functions seeds used together);
- `topic`: k functions of one topic (a start function, then k-1 of its topic neighbours);
- `edgeless`: k functions uniformly at random, ignoring the graph.

When the graph cannot supply k functions (the walk's component is too small, no topic has k
functions) the choice is padded uniformly and `details` says so; nothing is dropped silently.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from curate.errors import CurateError
from curate.synth.graph import cooccurrence_view

STRATEGIES = ("cooccurrence", "topic", "edgeless")


@dataclass
class Sampled:
    ids: list[str]
    details: dict[str, Any] = field(default_factory=dict)


class Sampler:
    """The graph's adjacency, prepared once, for drawing many samples quickly."""

    def __init__(self, graph: nx.Graph):
        self.graph = graph
        self.nodes = sorted(graph.nodes)
        co = cooccurrence_view(graph)
        self.neighbours = {n: sorted(co.neighbors(n)) for n in self.nodes}
        self.weights = {n: [co.edges[n, m]["cooccurrence"] for m in self.neighbours[n]] for n in self.nodes}
        self.starts = [n for n in self.nodes if self.neighbours[n]]
        self.topics: dict[str, list[str]] = {}
        for node in self.nodes:
            if graph.nodes[node]["topic"]:
                self.topics.setdefault(graph.nodes[node]["topic"], []).append(node)

    def sample(self, k: int, strategy: str, rng: random.Random) -> Sampled:
        """k distinct function ids drawn by `strategy`."""
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
        if not 1 <= k <= len(self.nodes):
            raise ValueError(f"cannot sample {k} functions from a library of {len(self.nodes)}")
        if strategy == "edgeless":
            return Sampled(rng.sample(self.nodes, k))
        if strategy == "topic":
            return self._topic(k, rng)
        return self._walk(k, rng)

    def _pad(self, ids: list[str], k: int, rng: random.Random, details: dict[str, Any]) -> Sampled:
        if len(ids) < k:
            chosen = set(ids)
            extra = rng.sample([n for n in self.nodes if n not in chosen], k - len(ids))
            details["padded"] = len(extra)
            ids = ids + extra
        return Sampled(ids, details)

    def _walk(self, k: int, rng: random.Random) -> Sampled:
        if not self.starts:
            return self._pad([], k, rng, {"fallback": "no co-occurrence edges"})
        current = rng.choice(self.starts)
        chosen, walk = [current], [current]
        for _ in range(20 * k):
            if len(chosen) >= k:
                break
            current = rng.choices(self.neighbours[current], weights=self.weights[current])[0]
            walk.append(current)
            if current not in chosen:
                chosen.append(current)
        return self._pad(chosen, k, rng, {"walk": walk})

    def _topic(self, k: int, rng: random.Random) -> Sampled:
        eligible = [n for members in self.topics.values() if len(members) >= k for n in members]
        if not eligible:
            return self._pad([], k, rng, {"fallback": f"no topic has {k} functions"})
        start = rng.choice(sorted(eligible))
        topic = self.graph.nodes[start]["topic"]
        same = [n for n in self.topics[topic] if n != start]      # its same-topic neighbours
        return Sampled([start] + rng.sample(same, k - 1), {"topic": topic})


def sample_functions(graph: nx.Graph, k: int, strategy: str, rng: random.Random) -> Sampled:
    """k distinct function ids drawn from `graph` by `strategy` (for many draws, keep one Sampler)."""
    return Sampler(graph).sample(k, strategy, rng)


def parse_k(text: str) -> tuple[int, int]:
    """`--k 3` -> (3, 3); `--k 2..4` -> (2, 4)."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:(?:\.\.|-)\s*(\d+))?\s*", str(text))
    if not match:
        raise CurateError(f"--k {text!r}: expected a number or a range like 2..4")
    low = int(match.group(1))
    return low, int(match.group(2) or low)
