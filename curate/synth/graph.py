"""The library as a graph: functions are nodes; co-occurrence and same-topic relations are edges.

A co-occurrence edge joins two functions used in the same seed solution, weighted by how many seeds
used both; a topic edge joins two functions of the same topic. One networkx Graph holds both: an
edge has `cooccurrence` (count, 0 if none) and `same_topic` (bool).
"""

from __future__ import annotations

from collections import Counter
from itertools import combinations
from typing import Any

import networkx as nx

from curate.store import Store
from curate.synth.library import LibraryFunction, load_functions, load_uses


def build_graph(functions: list[LibraryFunction], uses: dict[str, set[str]]) -> nx.Graph:
    graph = nx.Graph()
    for function in functions:
        graph.add_node(function.function_id, function=function, name=function.name, topic=function.topic,
                       origin=function.origin)
    members = set(graph.nodes)
    pairs: Counter = Counter()
    for used in uses.values():
        pairs.update(combinations(sorted(used & members), 2))
    for (a, b), count in pairs.items():
        graph.add_edge(a, b, cooccurrence=count, same_topic=False)
    by_topic: dict[str, list[str]] = {}
    for function in functions:
        if function.topic:
            by_topic.setdefault(function.topic, []).append(function.function_id)
    for ids in by_topic.values():
        for a, b in combinations(ids, 2):
            if graph.has_edge(a, b):
                graph.edges[a, b]["same_topic"] = True
            else:
                graph.add_edge(a, b, cooccurrence=0, same_topic=True)
    return graph


def load_graph(store: Store, *, origin: str | None = None) -> nx.Graph:
    return build_graph(load_functions(store, origin=origin), load_uses(store))


def cooccurrence_view(graph: nx.Graph) -> nx.Graph:
    return nx.subgraph_view(graph, filter_edge=lambda a, b: graph.edges[a, b]["cooccurrence"] > 0)


def library_stats(store: Store) -> dict[str, Any]:
    graph = load_graph(store)
    with store.connect() as con:
        total, merged = con.execute("SELECT count(*), count(merged_into) FROM synth_functions").fetchone()
        merges = dict(con.execute("SELECT method, count(*) FROM synth_merges GROUP BY method").fetchall())
        origins = dict(con.execute("SELECT origin, count(*) FROM synth_functions WHERE merged_into IS NULL "
                                   "GROUP BY origin").fetchall())
        seeds = dict(con.execute("SELECT status, count(*) FROM synth_seeds GROUP BY status").fetchall())
    topics = Counter(data["topic"] or "(untagged)" for _, data in graph.nodes(data=True))
    co = cooccurrence_view(graph)
    return {
        "functions": graph.number_of_nodes(), "stored": total, "merged": merged, "origins": origins,
        "topics": dict(sorted(topics.items(), key=lambda kv: (-kv[1], kv[0]))),
        "cooccurrence_edges": co.number_of_edges(),
        "topic_edges": sum(1 for *_, same in graph.edges(data="same_topic") if same),
        "isolated_in_cooccurrence": sum(1 for n in co.nodes if co.degree(n) == 0),
        "merges": merges, "seeds": seeds,
    }
