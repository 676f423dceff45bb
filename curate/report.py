"""`curate report RUN_ID`: one self-contained HTML file (plots inline as PNG) about a selection run.

Sections appear when the store holds what they need for the run's pool: what the run did; per-source
composition; score histograms (pool vs selected); label coverage; a 2D PCA projection of the
embeddings with the selected points highlighted; cluster coverage (kMQ); the difficulty histogram
(MCTS); trajectory metrics (search agents). `compare` adds other runs' selections to the composition
and score plots.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from curate.errors import CurateError
from curate.selectors.base import Pool
from curate.store import Store
from curate.store.runs import get_run

MAX_POINTS = 5000      # points drawn in the projection (a seeded sample of the pool)
COLORS = ["#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def _figure_html(fig, caption: str) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode()
    return (f'<figure><img class="plot" alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _table_html(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return "<p>(none)</p>"
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row.values()) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _selected_mask(store: Store, pool: Pool, run_id: str) -> np.ndarray:
    table = pool.fetch("SELECT p.pool_index FROM pool p JOIN selections s USING (sample_id) "
                       "WHERE s.run_id = ? AND s.selected", [run_id])
    mask = np.zeros(len(pool), dtype=bool)
    mask[table["pool_index"].to_numpy()] = True
    return mask


def _composition(pool: Pool, masks: dict[str, np.ndarray]) -> str:
    import matplotlib.pyplot as plt

    table = pool.fetch("SELECT p.pool_index, min(src.name) AS source FROM pool p JOIN sample_sources ss "
                       "USING (sample_id) JOIN sources src USING (source_id) GROUP BY 1")
    index, source = table["pool_index"].to_numpy(), np.asarray(table["source"].to_pylist(), dtype=object)
    names = sorted(set(source.tolist()))
    if not names:
        return ""
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(names) + 1.5))
    y = np.arange(len(names))
    series = {"pool": np.ones(len(pool), dtype=bool), **masks}
    height = 0.8 / len(series)
    for k, (label, mask) in enumerate(series.items()):
        chosen = mask[index]
        counts = np.array([np.sum(chosen & (source == n)) for n in names], dtype=float)
        share = counts / max(counts.sum(), 1)
        ax.barh(y + k * height, share, height, label=label, color="#1f77b4" if k == 0 else COLORS[(k - 1) % 5])
    ax.set_yticks(y + height * (len(series) - 1) / 2, names)
    ax.set_xlabel("share of samples")
    ax.legend()
    rows = [{"source": n, "pool": int(np.sum(source == n)),
             **{label: int(np.sum(mask[index] & (source == n))) for label, mask in masks.items()}} for n in names]
    return "<h2>Sources</h2>" + _figure_html(fig, "per-source composition, pool vs selected") + _table_html(rows)


def _scores(pool: Pool, masks: dict[str, np.ndarray]) -> str:
    import matplotlib.pyplot as plt

    scorers = pool.fetch("SELECT s.scorer, count(*) AS n FROM pool p JOIN scores s USING (sample_id) "
                         "WHERE s.status = 'ok' GROUP BY 1 HAVING n > 1 ORDER BY 1")["scorer"].to_pylist()
    parts = []
    for scorer in scorers[:8]:
        values = pool.scores(scorer)
        known = ~np.isnan(values)
        fig, ax = plt.subplots(figsize=(7, 3))
        bins = np.histogram_bin_edges(values[known], bins=30)
        ax.hist(values[known], bins=bins, alpha=0.5, density=True, label=f"pool ({known.sum()})", color="#1f77b4")
        for k, (label, mask) in enumerate(masks.items()):
            chosen = known & mask
            if chosen.any():
                ax.hist(values[chosen], bins=bins, alpha=0.5, density=True, label=f"{label} ({chosen.sum()})",
                        color=COLORS[k % 5])
        ax.set_xlabel(scorer)
        ax.legend()
        kind = "difficulty (MCTS iterations)" if scorer.startswith("mcts") else "score"
        parts.append(_figure_html(fig, f"{kind} histogram: {scorer}, pool vs selected"))
    return "<h2>Scores</h2>" + "".join(parts) if parts else ""


def _labels(pool: Pool, mask: np.ndarray) -> str:
    import matplotlib.pyplot as plt

    index, labels = pool.labels()
    if not len(labels):
        return ""
    names, inverse = np.unique(labels.astype(str), return_inverse=True)
    pool_counts = np.bincount(inverse, minlength=len(names))
    chosen_counts = np.bincount(inverse[mask[index]], minlength=len(names))
    covered = int((chosen_counts > 0).sum())
    top = np.argsort(-pool_counts)[:25]
    fig, ax = plt.subplots(figsize=(8, 6))
    y = np.arange(len(top))
    ax.barh(y, pool_counts[top] / pool_counts.sum(), 0.4, label="pool", color="#1f77b4")
    ax.barh(y + 0.4, chosen_counts[top] / max(chosen_counts.sum(), 1), 0.4, label="selected", color=COLORS[0])
    ax.set_yticks(y + 0.2, [str(n)[:40] for n in names[top]])
    ax.invert_yaxis()
    ax.set_xlabel("share of label occurrences")
    ax.legend()
    return (f"<h2>Labels</h2><p>The selection covers {covered} of {len(names)} labels in the pool "
            f"({covered / len(names):.1%}).</p>" + _figure_html(fig, "label coverage: 25 most frequent labels"))


def _projection(store: Store, pool: Pool, mask: np.ndarray) -> str:
    import matplotlib.pyplot as plt

    with store.connect() as con:
        found = con.execute("SELECT model, view, count(*) AS n FROM embeddings GROUP BY ALL ORDER BY n DESC "
                            "LIMIT 1").fetchone()
    if not found:
        return ""
    model, view, _ = found
    rng = np.random.default_rng(0)
    chosen = np.flatnonzero(mask)
    others = np.flatnonzero(~mask)
    keep = np.concatenate([chosen[: MAX_POINTS // 2],
                           rng.choice(others, min(len(others), MAX_POINTS - min(len(chosen), MAX_POINTS // 2)),
                                      replace=False)]) if len(others) else chosen[:MAX_POINTS]
    keep.sort()
    try:
        from curate.models.embed import load_embeddings

        vectors = load_embeddings(store, pool.ids[keep], model, view)
    except CurateError:
        return ""
    centred = vectors - vectors.mean(axis=0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    points = centred @ components[:2].T
    selected = mask[keep]
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.scatter(points[~selected, 0], points[~selected, 1], s=4, alpha=0.3, color="#7f7f7f", label="pool")
    ax.scatter(points[selected, 0], points[selected, 1], s=6, alpha=0.8, color=COLORS[0], label="selected")
    ax.legend()
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    return "<h2>Embedding space</h2>" + _figure_html(
        fig, f"PCA of {view} embeddings ({model}); {len(keep)} points, selected highlighted")


def _clusters(store: Store, run_id: str) -> str:
    import matplotlib.pyplot as plt

    with store.connect() as con:
        rows = con.execute("SELECT CAST(details->>'cluster' AS INTEGER) AS cluster, count(*) AS n FROM selections "
                           "WHERE run_id = ? AND selected AND details->>'cluster' IS NOT NULL GROUP BY 1 ORDER BY 1",
                           [run_id]).fetchall()
    if not rows:
        return ""
    clusters, counts = zip(*rows)
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.bar(range(len(clusters)), counts, color=COLORS[1])
    ax.set_xlabel("cluster (sorted by id)")
    ax.set_ylabel("selected")
    return (f"<h2>Clusters</h2><p>{len(clusters)} clusters contribute to the selection.</p>"
            + _figure_html(fig, "selected samples per cluster"))


def _trajectories(store: Store, run_id: str) -> str:
    with store.connect() as con:
        exists = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'trajectories'"
                             ).fetchone()[0]
        if not exists:
            return ""
        rows = con.execute(
            "SELECT sel.selected, count(*) AS trajectories, avg(t.em) AS em, avg(t.f1) AS f1, "
            "avg(t.searches) AS searches FROM selections sel JOIN trajectories t USING (sample_id) "
            "WHERE sel.run_id = ? GROUP BY 1 ORDER BY 1 DESC", [run_id]).fetchall()
    if not rows:
        return ""
    table = [{"selected": s, "trajectories": n, "EM": f"{em:.3f}" if em is not None else "",
              "F1": f"{f1:.3f}" if f1 is not None else "", "searches": f"{q:.2f}" if q is not None else ""}
             for s, n, em, f1, q in rows]
    return "<h2>Trajectories</h2>" + _table_html(table)


STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:960px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
figure{margin:1em 0}img.plot{max-width:100%}figcaption{color:#555;font-size:90%}code{background:#f4f4f4}"""


def render_report(store: Store, run_id: str, compare: Sequence[str] = ()) -> str:
    import matplotlib

    matplotlib.use("Agg")
    run = get_run(store, run_id)
    if not run["kind"].startswith("select:"):
        raise CurateError(f"run {run_id} is a {run['kind']} run; a report is about a selection run")
    pool = Pool.from_store(store, run["params"].get("where"))
    runs = [run_id] + [r for r in compare if r != run_id]
    masks = {r: _selected_mask(store, pool, r) for r in runs}
    mask = masks[run_id]
    info = [{"run": run_id, "kind": run["kind"], "status": run["status"], "recipe": run["recipe"] or "",
             "started": str(run["started_at"]), "finished": str(run["finished_at"]),
             "pool": len(pool), "selected": int(mask.sum())}]
    parameters = [{"parameter": k, "value": v} for k, v in run["params"].items()]
    sections = [
        f"<h1>Selection report: {html.escape(run_id)}</h1>", _table_html(info),
        "<h2>Parameters</h2>", _table_html(parameters),
        "<h2>Counts</h2>", _table_html([run["counts"] or {}]),
        _composition(pool, masks), _scores(pool, masks), _labels(pool, mask), _projection(store, pool, mask),
        _clusters(store, run_id), _trajectories(store, run_id),
    ]
    body = "\n".join(s for s in sections if s)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>curate report {html.escape(run_id)}</title>"
            f"<style>{STYLE}</style></head><body>{body}</body></html>")


def write_report(store: Store, run_id: str, out: str | Path, compare: Sequence[str] = ()) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staged = out.with_name(f".{out.name}.tmp")
    staged.write_text(render_report(store, run_id, compare))
    staged.replace(out)
    return out
