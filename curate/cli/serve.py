"""`curate serve`: an OpenAI-compatible HTTP server for a local model."""

from __future__ import annotations

import typer

from curate.cli.app import app, console
from curate.cli.models import BACKEND, LLM_MODEL
from curate.errors import CurateError
from curate.models.llm import ChatRequest, get_backend


@app.command("serve")
def serve_command(
    backend: str = BACKEND,
    model: str = LLM_MODEL,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0 for every interface)."),
    port: int = typer.Option(8000, "--port", min=0, max=65535),
    served_model_name: str = typer.Option(None, "--served-model-name",
                                          help="The model name clients ask for (default: --model)."),
    max_batch: int = typer.Option(32, "--max-batch", min=1,
                                  help="Most requests generated together in one backend call."),
) -> None:
    """Serve a model at /v1/chat/completions and /v1/models (no response cache: clients keep theirs)."""
    import uvicorn

    from curate.models.llm.server import create_app

    options = {"batch_size": max_batch} if backend == "transformers" else {}
    served = get_backend(backend, model, **options)
    # load the model before listening: one that cannot load stops here, with why
    (probe,) = served.generate([ChatRequest(messages=({"role": "user", "content": "Hi"},), max_tokens=1)])
    if not probe.ok:
        raise CurateError(f"cannot serve {model!r} with the {backend} backend: {probe.error}")
    console.print(f"serving {model} ({backend}) as {served_model_name or model} at http://{host}:{port}/v1")
    uvicorn.run(create_app(served, served_model_name, max_batch=max_batch), host=host, port=port,
                log_level="info", access_log=False)
