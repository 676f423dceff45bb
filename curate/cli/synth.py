"""`curate synth library` and `curate synth generate`: RV-Syn verifiable synthesis."""

from __future__ import annotations

import pyarrow as pa
import typer

from curate.cli.app import app, console, print_table, store_of
from curate.cli.models import BACKEND, BASE_URL, LLM_MODEL, make_backend
from curate.synth.extract import LibraryBuilder
from curate.synth.generate import Synthesiser
from curate.synth.graph import library_stats
from curate.synth.library import install_starter
from curate.synth.merge import merge_equivalent, merge_identical
from curate.synth.sampling import STRATEGIES, parse_k

synth_app = typer.Typer(no_args_is_help=True, help="RV-Syn: build a function library, synthesise verified "
                                                   "problems from it.")
app.add_typer(synth_app, name="synth")


def _print_stats(store) -> None:
    stats = library_stats(store)
    console.print(f"library: {stats['functions']} functions ({stats['stored']} stored, {stats['merged']} merged "
                  f"into others); origins {stats['origins']}")
    console.print(f"edges: {stats['cooccurrence_edges']} co-occurrence, {stats['topic_edges']} same-topic; "
                  f"{stats['isolated_in_cooccurrence']} functions without co-occurrence edges")
    console.print(f"merges: {stats['merges'] or 'none'}; seeds: {stats['seeds'] or 'none'}")
    print_table(pa.table({"topic": list(stats["topics"]), "functions": list(stats["topics"].values())}),
                title="topics")


@synth_app.command("library")
def library_command(
    ctx: typer.Context,
    starter: bool = typer.Option(False, "--starter", help="Install the built-in starter library (idempotent)."),
    from_source: str = typer.Option(None, "--from-source", help="Build functions from the seeds of this source "
                                    "(samples ingested with --dialect gsm8k or math)."),
    backend: str = BACKEND,
    model: str = LLM_MODEL,
    base_url: str = BASE_URL,
    limit: int = typer.Option(None, "--limit", min=1, help="Use the first N seeds of the source."),
    tag_topics: bool = typer.Option(False, "--tag-topics/--keyword-topics",
                                    help="Tag new functions' topics with the LLM (default: keywords)."),
    behavioural: bool = typer.Option(False, "--behavioural", help="Also merge functions that return the same "
                                     "outputs on random inputs."),
    max_tokens: int = typer.Option(768, "--max-tokens", min=16, help="LLM tokens per seed decomposition."),
    seed: int = typer.Option(0, "--seed"),
    stats: bool = typer.Option(False, "--stats", help="Print the library's size, topics, edges and merges "
                               "(also printed after --starter or --from-source)."),
) -> None:
    """Build or inspect the function library (synth_functions); prints its statistics."""
    store = store_of(ctx)
    if starter:
        console.print(f"starter library: {install_starter(store)} functions added")
        merges = merge_identical(store)
        if behavioural:
            merges += merge_equivalent(store, seed=seed)
        if merges:
            console.print(f"merged {len(merges)} duplicates")
    if from_source:
        builder = LibraryBuilder(make_backend(store, backend, model, base_url), limit=limit, max_tokens=max_tokens,
                                 tag_topics=tag_topics, behavioural=behavioural, seed=seed)
        report = builder.run(store, from_source)
        console.print(f"seeds: {report.seeds}, kept {report.kept}; dropped: {dict(report.dropped) or 'none'}")
        console.print(f"functions added: {report.functions_added}; merges: {report.merges}")
        console.print("why each seed was kept or dropped: curate sql \"SELECT sample_id, status, reason, error "
                      f"FROM synth_seeds WHERE run_id = '{report.run_id}'\"")
    _print_stats(store)
    if from_source:
        console.print(report.run_id)


@synth_app.command("generate")
def generate_command(
    ctx: typer.Context,
    n: int = typer.Option(..., "--n", min=1, help="How many verified problems to keep."),
    k: str = typer.Option("2..4", "--k", help="Functions per problem: a number 1-4 or a range like 2..4."),
    strategy: str = typer.Option("cooccurrence", "--strategy", help=f"Sampling: {', '.join(STRATEGIES)}."),
    no_llm: bool = typer.Option(False, "--no-llm", help="Typed composer, sentence templates and trace "
                                                        "solutions: no model at all."),
    backend: str = BACKEND,
    model: str = LLM_MODEL,
    base_url: str = BASE_URL,
    compose: str = typer.Option(None, "--compose", help="Who writes solution(): llm (default with a backend) or "
                                "typed (the typed composer; the LLM still back-translates and verifies)."),
    seed: int = typer.Option(0, "--seed", help="The same seed and library give the same problems."),
    verify_samples: int = typer.Option(4, "--verify-samples", min=1, help="Solutions sampled to verify each "
                                                                          "problem (LLM)."),
    origin: str = typer.Option("all", "--origin", help="Draw from starter, llm or all functions."),
    max_attempts: int = typer.Option(None, "--max-attempts", min=1, help="Give up after this many attempts "
                                                                         "(default 20 n + 50)."),
    max_tokens: int = typer.Option(512, "--max-tokens", min=16, help="LLM tokens per step."),
    timeout: float = typer.Option(5.0, "--timeout", min=0.1, help="Sandbox seconds per program."),
    source: str = typer.Option("rvsyn", "--source", help="Source name the synthetic samples are credited to."),
) -> None:
    """Synthesise verified problems: sample, compose, execute, back-translate, verify, store.

    Every attempt is a row of synth_problems (kept or rejected, with the stage and reason); kept ones
    are also samples of kind 'synthetic'. Prints the rejection counts, then the run id alone on the
    last line.
    """
    store = store_of(ctx)
    llm = None if no_llm else make_backend(store, backend, model, base_url)
    synthesiser = Synthesiser(n, k=parse_k(k), strategy=strategy, backend=llm, seed=seed,
                              verify_samples=verify_samples, origin=origin, max_attempts=max_attempts,
                              max_tokens=max_tokens, timeout=timeout, source=source,
                              compose=compose)
    report = synthesiser.run(store, log=lambda message: None)
    console.print(f"kept {report.kept} of {report.attempts} attempts in {report.seconds:.1f}s "
                  f"({report.problems_per_second:,.1f} problems/s)")
    if report.kept < n:
        console.print(f"warning: wanted {n}; stopped after {report.attempts} attempts (--max-attempts)")
    if report.rejected:
        print_table(pa.table({"reason": list(report.rejected), "attempts": list(report.rejected.values())}),
                    title="rejected")
    console.print(report.run_id)
