"""Real OpenAI-compatible servers for tests: `curate serve` in a child process on 127.0.0.1.

    from tests.servers import local_openai_server

    with local_openai_server() as base_url:                 # e.g. http://127.0.0.1:41234/v1
        backend = get_backend("openai", "smollm2-135m", base_url=base_url)

For a module's worth of tests, hold one server in a module-scoped fixture:

    @pytest.fixture(scope="module")
    def openai_url():
        with local_openai_server() as base_url:
            yield base_url

Starting takes a few seconds (imports and loading the model; the first run on a machine also
exports the packaged GGUF model once, about 30 s more).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
READY_SECONDS = 300.0


class ServerFailed(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_ready(process: subprocess.Popen, url: str, log: Path, deadline: float) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerFailed(f"curate serve exited with status {process.returncode}:\n{_tail(log)}")
        try:
            if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise ServerFailed(f"curate serve was not ready after {READY_SECONDS:.0f}s:\n{_tail(log)}")


def _tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)        # uvicorn shuts down gracefully
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def local_openai_server(model: str = "smollm2-135m", *, backend: str = "transformers",
                        max_batch: int = 32, attempts: int = 3) -> Iterator[str]:
    """Start `curate serve` for `model` on a free port of 127.0.0.1; yield its base URL (…/v1); stop it."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    with tempfile.TemporaryDirectory(prefix="curate-serve-") as folder:
        log = Path(folder) / "server.log"
        for attempt in range(attempts):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            with log.open("w") as out:
                process = subprocess.Popen(
                    [sys.executable, "-m", "curate", "serve", "--backend", backend, "--model", model,
                     "--host", "127.0.0.1", "--port", str(port), "--max-batch", str(max_batch)],
                    cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
            try:
                _wait_ready(process, url, log, time.monotonic() + READY_SECONDS)
            except ServerFailed:
                _stop(process)
                if "address already in use" in log.read_text(errors="replace") and attempt + 1 < attempts:
                    continue                          # another process took the port first: try another
                raise
            try:
                yield f"{url}/v1"
            finally:
                _stop(process)
            return
