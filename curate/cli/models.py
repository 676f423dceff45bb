"""`curate embed`, and the LLM options every LLM-using command shares."""

from __future__ import annotations

from enum import Enum

import typer

from curate.cli.app import app, console, store_of
from curate.errors import CurateError
from curate.models.embed import DEFAULT_MODEL, embed_samples
from curate.models.llm import BACKENDS, LLMBackend, get_backend
from curate.store import Store


class View(str, Enum):
    prompt = "prompt"
    conversation = "conversation"
    response = "response"


# Shared by every command that calls an LLM: `backend: str = BACKEND, model: str = LLM_MODEL, ...`
BACKEND = typer.Option("transformers", "--backend", help=f"LLM backend: {', '.join(BACKENDS)}.")
LLM_MODEL = typer.Option("smollm2-135m", "--model", help="Model: an HF id, a local folder, a .gguf file, "
                                                          "or smollm2-135m (packaged, offline).")
BASE_URL = typer.Option(None, "--base-url", help="OpenAI-compatible server URL (openai backend); "
                                                 "key from OPENAI_API_KEY.")


def make_backend(store: Store, backend: str, model: str, base_url: str | None = None, **options) -> LLMBackend:
    """The backend, behind the store's response cache (so an interrupted stage resumes)."""
    if base_url and backend != "openai":
        raise CurateError(f"--base-url is for the openai backend, not {backend!r}")
    if base_url:
        options["base_url"] = base_url
    return get_backend(backend, model, store=store, **options)


@app.command("embed")
def embed_command(
    ctx: typer.Context,
    model: str = typer.Option(DEFAULT_MODEL, "--model", help="Any sentence-transformers name or local path "
                                                             "(default: packaged, offline)."),
    view: View = typer.Option(View.prompt, "--view", help="What to embed: prompt (system+user turns, kMQ's "
                                                          "convention), conversation, or response."),
    where: str = typer.Option(None, "--where", help="SQL predicate over samples: embed only these."),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    ray: bool = typer.Option(False, "--ray", help="Spread the work over a Ray cluster's model replicas "
                                                  "(one per GPU, else one per CPU)."),
    ray_address: str = typer.Option(None, "--ray-address", help="The cluster to join (default: RAY_ADDRESS, "
                                                                "else a new local one). Implies --ray."),
    replicas: int = typer.Option(None, "--replicas", min=1, help="Model replicas on Ray (default: as above)."),
) -> None:
    """Embed samples that have no embedding for this model and view yet (a re-run computes nothing)."""
    report = embed_samples(store_of(ctx), model, view.value, where=where, batch_size=batch_size,
                           ray=ray or ray_address is not None, ray_address=ray_address, replicas=replicas)
    console.print(f"embedded {report.computed} samples ({report.already} already had one) with {report.model} "
                  f"[{report.view}]; {report.truncated} truncated to the model's limit; "
                  f"{report.texts_per_second:,.0f} texts/s")
