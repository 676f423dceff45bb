"""An OpenAI-compatible chat-completions server over any backend: what `curate serve` runs.

    app = create_app(get_backend("transformers", "smollm2-135m"), served_name="smollm2-135m")

Routes: `POST /v1/chat/completions`, `GET /v1/models`, `GET /health`. Besides the standard fields
it takes vLLM's extra parameters `continue_final_message`, `add_generation_prompt` and
`include_stop_str_in_output`, and says so with `owned_by: "curate"` in `/v1/models`, so the
`openai` backend sends them. Requests that arrive while the model is busy are generated together
in the next backend call (at most `max_batch`): concurrent clients share batches. Streaming, tools,
response formats and penalties are refused with a 400 rather than ignored.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from curate.models.llm.base import ChatRequest, ChatResponse, LLMBackend

DEFAULT_MAX_TOKENS = 1024     # when a request names none (OpenAI's default is the rest of the context)


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class Message(BaseModel):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[TextPart]

    def as_dict(self) -> dict[str, str]:
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class ChatBody(BaseModel):
    """A chat-completions request: OpenAI's fields we honour, plus vLLM's extras."""

    model_config = ConfigDict(extra="ignore")
    model: str
    messages: list[Message] = Field(min_length=1)
    n: int = Field(1, ge=1, le=64)
    temperature: float = Field(1.0, ge=0.0, le=2.0)     # OpenAI's default
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    logprobs: bool = False
    top_logprobs: int = Field(0, ge=0, le=20)
    stream: bool = False
    continue_final_message: bool = False               # vLLM
    add_generation_prompt: bool = True                 # vLLM
    include_stop_str_in_output: bool = False           # vLLM
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    tools: list[Any] | None = None
    response_format: dict[str, Any] | None = None

    def to_request(self) -> ChatRequest:
        refused = [name for name, given in (
            ("stream", self.stream), ("tools", self.tools), ("response_format", self.response_format),
            ("frequency_penalty", self.frequency_penalty), ("presence_penalty", self.presence_penalty)) if given]
        if refused:
            raise ValueError(f"not supported by this server: {', '.join(refused)}")
        if self.continue_final_message and self.add_generation_prompt:
            raise ValueError("continue_final_message needs add_generation_prompt: false")
        if not self.continue_final_message and not self.add_generation_prompt:
            raise ValueError("add_generation_prompt: false is only supported with continue_final_message")
        max_tokens = self.max_completion_tokens or self.max_tokens or DEFAULT_MAX_TOKENS
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        # log-probs for every generated token, as OpenAI reports them; the top alternatives as asked
        return ChatRequest(
            messages=tuple(m.as_dict() for m in self.messages), n=self.n, temperature=self.temperature,
            top_p=self.top_p, max_tokens=max_tokens, stop=stop, include_stop=self.include_stop_str_in_output,
            continue_final_message=self.continue_final_message, seed=self.seed,
            logprobs=max(self.top_logprobs, 1) if self.logprobs else 0,
            logprob_tokens=max_tokens if self.logprobs else 1)


def completion_json(response: ChatResponse, body: ChatBody, served_name: str) -> dict[str, Any]:
    choices = []
    for index, choice in enumerate(response.choices):
        logprobs = None
        if body.logprobs and choice.logprobs is not None:
            logprobs = {"content": [
                {"token": t.token, "logprob": t.logprob, "bytes": list(t.token.encode()),
                 "top_logprobs": [{"token": tok, "logprob": lp, "bytes": list(tok.encode())}
                                  for tok, lp in list(t.top.items())[:body.top_logprobs]]}
                for t in choice.logprobs]}
        choices.append({"index": index, "message": {"role": "assistant", "content": choice.text},
                        "finish_reason": choice.finish_reason, "logprobs": logprobs})
    completion_tokens = sum(c.tokens for c in response.choices)
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": served_name, "choices": choices,
            "usage": {"prompt_tokens": response.prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": response.prompt_tokens + completion_tokens}}


class Batcher:
    """Feeds the backend from a queue: what arrives while it generates goes into its next call."""

    def __init__(self, backend: LLMBackend, max_batch: int = 32):
        self.backend = backend
        self.max_batch = max_batch
        self.queue: asyncio.Queue = asyncio.Queue()
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="generate")   # one generate at a time
        self.requests = 0         # requests generated
        self.batches = 0          # backend calls they took (requests / batches: how well they were batched)

    async def submit(self, request: ChatRequest) -> ChatResponse:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((request, future))
        return await future

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await self.queue.get()]
            await asyncio.sleep(0)            # let requests that arrived together join
            while len(items) < self.max_batch and not self.queue.empty():
                items.append(self.queue.get_nowait())
            requests = [request for request, _ in items]
            try:
                responses = await loop.run_in_executor(self.executor, self.backend.generate, requests)
            except Exception as error:         # a backend that raises fails this batch, not the server
                responses = [ChatResponse(error=f"{type(error).__name__}: {error}") for _ in items]
            self.requests += len(items)
            self.batches += 1
            for (_, future), response in zip(items, responses):
                if not future.done():         # the client may have gone
                    future.set_result(response)


def _error(status: int, kind: str, message: str):
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": status}}, status)


def create_app(backend: LLMBackend, served_name: str | None = None, *, max_batch: int = 32):
    """The FastAPI app serving `backend` under `served_name` (default: the backend's model)."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError

    served_name = served_name or backend.model
    batcher = Batcher(backend, max_batch)

    @asynccontextmanager
    async def lifespan(app):
        worker = asyncio.create_task(batcher.run())
        yield
        worker.cancel()
        batcher.executor.shutdown(wait=False, cancel_futures=True)
        backend.close()

    app = FastAPI(title="curate serve", lifespan=lifespan)
    app.state.batcher = batcher

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError):
        problems = "; ".join(f"{'.'.join(map(str, e['loc'][1:])) or 'body'}: {e['msg']}" for e in error.errors())
        return _error(400, "BadRequestError", problems)

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": served_name, "requests": batcher.requests, "batches": batcher.batches}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": served_name, "object": "model", "created": int(time.time()),
                                            "owned_by": "curate", "root": backend.model}]}

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatBody):
        if body.model != served_name:
            return _error(404, "NotFoundError", f"The model `{body.model}` does not exist (this server has "
                                                f"`{served_name}`).")
        try:
            request = body.to_request()
        except ValueError as error:
            return _error(400, "BadRequestError", str(error))
        response = await batcher.submit(request)
        if not response.ok:
            return _error(500, "InternalServerError", response.error)
        return completion_json(response, body, served_name)

    return app
