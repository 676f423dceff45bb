"""The `openai` backend: any OpenAI-compatible chat-completions server.

    backend = OpenAIBackend("Qwen/Qwen2.5-7B-Instruct", base_url="http://gpu-1:8000/v1")   # vllm serve
    backend = OpenAIBackend("smollm2-135m", base_url="http://127.0.0.1:8000/v1")           # curate serve

`base_url` is the API root (the SDK convention, ending in `/v1`; a bare `http://host:port` gets
`/v1` added); default `OPENAI_BASE_URL`, else OpenAI's. The key is read from `OPENAI_API_KEY`; a
local server without one gets no Authorization header.

Requests run concurrently (at most `concurrency` in flight) over one connection pool. A request that
times out, cannot connect, or gets 429 or 5xx is retried `retries` times with exponential backoff and
jitter (a server's Retry-After is honoured); any other HTTP error fails the request at once with the
server's message. A failed request is a `ChatResponse` with its error, never a default answer.

Every `ChatRequest` field is sent: n, temperature, top_p, max_tokens, stop, seed, and
logprobs/top_logprobs (the first `logprob_tokens` tokens are kept). Two fields have no standard
OpenAI parameter: `continue_final_message` and `include_stop`. vLLM takes them as extra parameters
(`continue_final_message` with `add_generation_prompt: false`, `include_stop_str_in_output`), and so
does `curate serve`. The backend asks the server's `/models` once who it is (`owned_by`: "vllm" or
"curate"); `server="vllm"` or `server="openai"` says it instead. On any other server a request that
needs either field fails with an error saying so: a plain server would answer a continuation as a
new turn, and drop the stop string, so its answer would be silently wrong.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from curate.errors import CurateError
from curate.models.llm.base import ChatRequest, ChatResponse, Choice, LLMBackend, TokenLogprob

OPENAI_BASE_URL = "https://api.openai.com/v1"
EXTENDED_SERVERS = {"vllm", "curate"}    # owned_by of servers that take vLLM's extra chat parameters
SERVER_KINDS = ("auto", "vllm", "openai")


class RequestFailed(Exception):
    """A request that failed for good (after its retries, or at once for a non-retryable status)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def api_root(base_url: str) -> str:
    url = base_url.rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CurateError(f"--base-url {base_url!r}: expected http(s)://host[:port][/path], e.g. http://127.0.0.1:8000/v1")
    return url if parts.path else url + "/v1"


def request_body(model: str, request: ChatRequest, extended: bool) -> dict[str, Any]:
    """The chat-completions body for `request`; raises RequestFailed for what the server cannot do."""
    body: dict[str, Any] = {"model": model, "messages": list(request.messages), "n": request.n,
                            "temperature": request.temperature, "top_p": request.top_p,
                            "max_tokens": request.max_tokens}
    if request.stop:
        body["stop"] = list(request.stop)
    if request.seed is not None:
        body["seed"] = request.seed
    if request.logprobs:
        body["logprobs"] = True
        body["top_logprobs"] = request.logprobs
    needs = [name for name, wanted in (("continue_final_message", request.continue_final_message),
                                       ("include_stop", request.include_stop)) if wanted]
    if needs and not extended:
        raise RequestFailed(
            f"{' and '.join(needs)} needs a server that takes vLLM's extra parameters (vllm serve, curate serve); "
            "this one does not say it is one (pass server='vllm' if it is)")
    if request.continue_final_message:
        body["continue_final_message"] = True
        body["add_generation_prompt"] = False
    if request.include_stop:
        body["include_stop_str_in_output"] = True
    return body


def parse_response(data: dict[str, Any], request: ChatRequest) -> ChatResponse:
    choices = sorted(data.get("choices") or [], key=lambda c: c.get("index", 0))
    if len(choices) != request.n:
        raise RequestFailed(f"the server returned {len(choices)} choices for n={request.n} "
                            "(servers without n > 1 support need one request per sample)")
    usage = data.get("usage") or {}
    parsed = []
    for choice in choices:
        content = (choice.get("logprobs") or {}).get("content") or []
        logprobs = None
        if request.logprobs:
            logprobs = [TokenLogprob(token=t["token"], logprob=float(t["logprob"]),
                                     top={a["token"]: float(a["logprob"]) for a in t.get("top_logprobs") or []})
                        for t in content[:request.logprob_tokens]]
        # usage counts all choices together: per choice only when there is one, or from its log-probs
        tokens = usage.get("completion_tokens", 0) if request.n == 1 else len(content)
        # content is null when a model answers only with a refusal or tool calls: an empty answer
        parsed.append(Choice(text=choice["message"].get("content") or "",
                             finish_reason=choice.get("finish_reason") or "stop", tokens=tokens, logprobs=logprobs))
    return ChatResponse(choices=parsed, prompt_tokens=usage.get("prompt_tokens", 0))


def _error_message(response) -> str:
    try:
        error = response.json().get("error", response.json())
        message = error.get("message", error) if isinstance(error, dict) else error
    except ValueError:
        message = response.text[:500]
    return f"HTTP {response.status_code}: {message}"


class OpenAIBackend(LLMBackend):
    name = "openai"

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None,
                 concurrency: int = 16, timeout: float = 600.0, retries: int = 6, backoff: float = 1.0,
                 max_backoff: float = 60.0, server: str = "auto", extra_body: dict[str, Any] | None = None,
                 transport=None):
        if server not in SERVER_KINDS:
            raise CurateError(f"server {server!r}: choose from {', '.join(SERVER_KINDS)}")
        if concurrency < 1:
            raise CurateError("concurrency must be at least 1")
        self.model = model
        self.base_url = api_root(base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_BASE_URL)
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.concurrency = concurrency
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.server = server
        self.extra_body = dict(extra_body or {})   # e.g. vLLM's top_k, min_p, repetition_penalty
        self.transport = transport                  # an httpx transport (tests)
        self._extended: bool | None = None if server == "auto" else server == "vllm"

    def generate(self, requests: Sequence[ChatRequest]) -> list[ChatResponse]:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.agenerate(requests))
        # called from inside an event loop (a notebook, an async flow): run ours on another thread
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, self.agenerate(requests)).result()

    async def agenerate(self, requests: Sequence[ChatRequest]) -> list[ChatResponse]:
        import httpx

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        timeout = httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0))
        async with httpx.AsyncClient(base_url=self.base_url, headers=headers, limits=limits, timeout=timeout,
                                     transport=self.transport) as client:
            if self._extended is None:
                try:
                    self._extended = await self._server_is_extended(client)
                except RequestFailed as error:     # the server is unreachable: every request fails with why
                    return [ChatResponse(error=str(error)) for _ in requests]
            slots = asyncio.Semaphore(self.concurrency)
            return list(await asyncio.gather(*(self._one(client, slots, r) for r in requests)))

    async def _one(self, client, slots: asyncio.Semaphore, request: ChatRequest) -> ChatResponse:
        try:
            body = request_body(self.model, request, self._extended) | self.extra_body
            async with slots:
                data = await self._call(client, "POST", "/chat/completions", body)
            return parse_response(data, request)
        except RequestFailed as error:
            return ChatResponse(error=str(error))
        except (KeyError, TypeError, ValueError) as error:     # a body that is not a chat completion
            return ChatResponse(error=f"malformed response from {self.base_url}: {type(error).__name__}: {error}")

    async def _call(self, client, method: str, path: str, body: dict | None = None) -> dict:
        """The JSON answer of one call, retried on timeouts, lost connections, 429 and 5xx."""
        import httpx

        for attempt in range(self.retries + 1):
            wait = None
            try:
                response = await client.request(method, path, json=body)
            except httpx.TransportError as error:     # timeouts, refused or dropped connections
                failure = f"{type(error).__name__} calling {self.base_url}{path}: {error}".rstrip(": ")
            else:
                if response.status_code == 200:
                    return response.json()
                failure = _error_message(response)
                if response.status_code != 429 and response.status_code < 500:
                    raise RequestFailed(failure, response.status_code)
                wait = _retry_after(response.headers.get("retry-after"))
            if attempt == self.retries:
                raise RequestFailed(f"{failure} (after {self.retries + 1} attempts)")
            if wait is None:
                wait = min(self.max_backoff, self.backoff * 2 ** attempt) * (0.5 + random.random() / 2)
            await asyncio.sleep(min(wait, self.max_backoff))
        raise AssertionError("unreachable")

    async def _server_is_extended(self, client) -> bool:
        """Whether the server says it takes vLLM's extra parameters (its /models `owned_by`)."""
        try:
            listing = await self._call(client, "GET", "/models")
            models = [m for m in listing.get("data") or [] if isinstance(m, dict)]
        except RequestFailed as error:
            if error.status is None:
                raise        # unreachable, or it kept failing: nothing would work
            return False     # it answered, but has no listing: a plain server
        except (ValueError, AttributeError):
            return False     # a listing that is not one: a plain server
        owners = {m.get("owned_by") for m in models if m.get("id") == self.model} or \
                 {m.get("owned_by") for m in models}
        return bool(owners & EXTENDED_SERVERS)


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:       # an HTTP date: fall back to our own backoff
        return None
