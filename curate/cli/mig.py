"""`curate select mig`: MIG's label-graph information gain (curate.selectors.mig)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from curate.cli.app import console, select_app, store_of
from curate.cli.select import BUDGET, WHERE, report_run
from curate.models.embed import DEFAULT_MODEL
from curate.selectors import Pool, run_selection
from curate.selectors.mig import MIGSelector


class PhiKind(str, Enum):
    pow = "pow"
    exp = "exp"


class GainKind(str, Enum):
    reference = "reference"
    exact = "exact"


class Impl(str, Enum):
    fast = "fast"
    dense = "dense"


@select_app.command("mig")
def mig_command(
    ctx: typer.Context,
    budget: int = BUDGET,
    where: str = WHERE,
    label_origin: str = typer.Option(None, "--label-origin", help="Use labels of this origin only, e.g. instag, "
                                                                  "embedding, llm [default: all]."),
    label_vocab: Path = typer.Option(None, "--label-vocab", help="JSON list of labels: keep only these, as MIG "
                                                                 "does with its valid_tags.json."),
    label_model: str = typer.Option(DEFAULT_MODEL, "--label-model", help="sentence-transformers model embedding the "
                                                                         "label strings (MIG used e5-mistral-7b)."),
    sim_threshold: float = typer.Option(0.9, "--sim-threshold", help="tau: label similarities below it are no edge."),
    prop_weight: float = typer.Option(1.0, "--prop-weight", help="omega: weight of the off-diagonal of W in P."),
    quality_score: str = typer.Option(None, "--quality-score", help="Scorer weighting each sample (e.g. deita from "
                                                                    "the mig-pool dialect) [default: 1 for all]."),
    norm: bool = typer.Option(False, "--norm/--no-norm", help="Divide each sample's weight by its label count."),
    phi: PhiKind = typer.Option(PhiKind.pow, "--phi", help="pow: (x + a)^b; exp: 1 - exp(-alpha x)."),
    phi_a: float = typer.Option(1e-6, "--phi-a"),
    phi_b: float = typer.Option(0.8, "--phi-b"),
    phi_alpha: float = typer.Option(1.0, "--phi-alpha"),
    gain: GainKind = typer.Option(GainKind.reference, "--gain", help="reference: <M_i, phi'(x)> (MIG's rule); "
                                                                     "exact: F(x + M_i) - F(x)."),
    impl: Impl = typer.Option(Impl.fast, "--impl", help="fast: sparse, lazy greedy; dense: the reference's "
                                                        "arithmetic (same order, far slower)."),
) -> None:
    """MIG: greedily maximise information over the label graph (Chen et al., 2025)."""
    store = store_of(ctx)
    pool = Pool.from_store(store, where)
    selector = MIGSelector(
        label_origin=label_origin, label_vocab=str(label_vocab) if label_vocab else None, label_model=label_model,
        sim_threshold=sim_threshold, prop_weight=prop_weight,
        quality_score=None if quality_score in (None, "none") else quality_score, norm=norm, phi=phi.value,
        phi_a=phi_a, phi_b=phi_b, phi_alpha=phi_alpha, gain=gain.value, impl=impl.value)
    run_id = run_selection(store, selector, pool, budget)
    with store.connect() as con:
        selected, candidates = con.execute(
            "SELECT count(*) FILTER (WHERE selected), (SELECT counts->>'candidates' FROM runs WHERE run_id = ?) "
            "FROM selections WHERE run_id = ?", [run_id, run_id]).fetchone()
    console.print(f"{candidates} candidates (labelled and scored) in a pool of {len(pool)}")
    report_run(run_id, len(pool), selected)
