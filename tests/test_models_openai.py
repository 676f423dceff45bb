"""The openai backend: against `curate serve` with the real small model, and its HTTP logic pinned
with scripted transports (retries, backoff, timeouts, what a plain server cannot do)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading

import httpx
import numpy as np
import pytest

from curate.errors import CurateError
from curate.models.llm import CachedBackend, ChatRequest, get_backend
from curate.models.llm import openai_backend as openai_module
from curate.models.llm.openai_backend import OpenAIBackend, api_root
from tests.servers import local_openai_server

QUESTION = ({"role": "user", "content": "What is 2+3? Answer with just the number."},)
PARTIAL = QUESTION + ({"role": "assistant", "content": "### Step1: add the numbers <end>\n### Step2:"},)


@pytest.fixture(scope="module")
def server_url():
    with local_openai_server() as base_url:
        yield base_url


@pytest.fixture(scope="module")
def smollm():
    return get_backend("transformers", "smollm2-135m")


# -- the real model behind a real server ----------------------------------------------------------

def test_openai_backend_matches_transformers_on_the_real_model(server_url, smollm):
    requests = [
        ChatRequest(QUESTION, max_tokens=12),
        ChatRequest(QUESTION, stop=("=",), include_stop=True, max_tokens=40),
        ChatRequest(QUESTION, stop=("=",), max_tokens=40),
        ChatRequest(PARTIAL, continue_final_message=True, stop=("<end>",), include_stop=True, max_tokens=40),
        ChatRequest(QUESTION, logprobs=5, logprob_tokens=2, max_tokens=4),
    ]
    remote = get_backend("openai", "smollm2-135m", base_url=server_url).generate(requests)
    local = smollm.generate(requests)
    assert all(r.ok for r in remote), [r.error for r in remote]
    greedy, kept, dropped, continued, scored = remote
    for theirs, ours in zip(remote, local):     # greedy: the same text through HTTP as in process
        assert [c.text for c in theirs.choices] == [c.text for c in ours.choices]
        assert [c.finish_reason for c in theirs.choices] == [c.finish_reason for c in ours.choices]
        assert theirs.prompt_tokens == ours.prompt_tokens
    assert "5" in greedy.text and greedy.choices[0].tokens == local[0].choices[0].tokens > 0
    assert kept.text.endswith("=") and dropped.text == kept.text[:-1]           # include_stop went through
    assert not continued.text.startswith("<|im_start|>") and "assistant" not in continued.text[:12]
    theirs, ours = scored.choices[0].logprobs, local[4].choices[0].logprobs
    assert [t.token for t in theirs] == [t.token for t in ours] and len(theirs) == 2
    assert list(theirs[0].top) == list(ours[0].top) and len(theirs[0].top) == 5
    np.testing.assert_allclose([t.logprob for t in theirs], [t.logprob for t in ours], atol=1e-4)


def test_openai_backend_samples_n_choices(server_url):
    backend = get_backend("openai", "smollm2-135m", base_url=server_url)
    (sampled,) = backend.generate([ChatRequest(QUESTION, n=4, temperature=1.0, top_p=0.95, max_tokens=16, seed=1)])
    assert sampled.ok and len(sampled.choices) == 4 and len({c.text for c in sampled.choices}) > 1


def test_concurrent_requests_share_batches_and_the_cache_resumes(server_url, store):
    before = httpx.get(server_url.removesuffix("/v1") + "/health").json()
    questions = [ChatRequest(({"role": "user", "content": f"What is {i} + {i}?"},), max_tokens=6) for i in range(8)]
    cached = CachedBackend(get_backend("openai", "smollm2-135m", base_url=server_url, concurrency=8), store)
    first = cached.generate(questions)
    assert all(r.ok for r in first) and cached.calls == 8
    after = httpx.get(server_url.removesuffix("/v1") + "/health").json()
    assert after["requests"] - before["requests"] == 8
    assert after["batches"] - before["batches"] < 8                  # requests in flight together were batched
    again = CachedBackend(get_backend("openai", "smollm2-135m", base_url=server_url), store)
    second = again.generate(questions)
    assert again.calls == 0 and again.hits == 8 and [r.text for r in second] == [r.text for r in first]


def test_server_errors_are_request_failures(server_url):
    wrong = get_backend("openai", "no-such-model", base_url=server_url, retries=0)
    (missing,) = wrong.generate([ChatRequest(QUESTION, max_tokens=4)])
    assert not missing.ok and "HTTP 404" in missing.error and "no-such-model" in missing.error
    streamed = httpx.post(f"{server_url}/chat/completions", json={
        "model": "smollm2-135m", "messages": list(QUESTION), "stream": True}).json()
    assert "stream" in streamed["error"]["message"]
    invalid = httpx.post(f"{server_url}/chat/completions", json={"model": "smollm2-135m", "messages": []})
    assert invalid.status_code == 400 and "messages" in invalid.json()["error"]["message"]
    models = httpx.get(f"{server_url}/models").json()["data"]
    assert [(m["id"], m["owned_by"]) for m in models] == [("smollm2-135m", "curate")]


def test_serve_refuses_a_model_it_cannot_load(cli):
    result = cli("serve", "--model", "/no/such/model.gguf", expect=1)
    assert "cannot serve" in result.stderr and "no such GGUF file" in result.stderr


# -- HTTP logic with scripted transports ------------------------------------------------------------

def completion(request: ChatRequest | None = None, text: str = "ok", choices: int = 1) -> dict:
    return {"choices": [{"index": i, "message": {"role": "assistant", "content": f"{text}{i}"},
                         "finish_reason": "stop"} for i in range(choices)],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2}}


class Script:
    """A scripted server: /models says who it is; chat answers come from `answer(attempt, body)`."""

    def __init__(self, owned_by: str = "vllm", answer=None):
        self.owned_by = owned_by
        self.answer = answer or (lambda attempt, body: httpx.Response(200, json=completion(choices=body["n"])))
        self.bodies: list[dict] = []
        self.headers: list[httpx.Headers] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            if self.owned_by is None:
                return httpx.Response(404, text="Not Found")
            return httpx.Response(200, json={"data": [{"id": "m", "owned_by": self.owned_by}]})
        body = json.loads(request.content)
        self.bodies.append(body)
        self.headers.append(request.headers)
        return self.answer(len(self.bodies), body)


@pytest.fixture
def sleeps(monkeypatch):
    """Record backoff waits instead of waiting."""
    waited = []

    async def fake_sleep(seconds):
        waited.append(seconds)

    monkeypatch.setattr(openai_module.asyncio, "sleep", fake_sleep)
    return waited


def backend_for(script: Script, **options) -> OpenAIBackend:
    return OpenAIBackend("m", base_url="http://test.invalid/v1", transport=httpx.MockTransport(script), **options)


def test_every_request_field_is_sent(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    script = Script("vllm")
    request = ChatRequest(PARTIAL, n=2, temperature=0.7, top_p=0.9, max_tokens=33, stop=("<end>", "\n\n"),
                          include_stop=True, continue_final_message=True, seed=11, logprobs=3)
    (response,) = backend_for(script).generate([request])
    assert response.ok and [c.text for c in response.choices] == ["ok0", "ok1"]
    body = script.bodies[0]
    assert body == {"model": "m", "messages": list(PARTIAL), "n": 2, "temperature": 0.7, "top_p": 0.9,
                    "max_tokens": 33, "stop": ["<end>", "\n\n"], "seed": 11, "logprobs": True, "top_logprobs": 3,
                    "continue_final_message": True, "add_generation_prompt": False,
                    "include_stop_str_in_output": True}
    assert script.headers[0]["authorization"] == "Bearer sk-test"


def test_a_plain_server_refuses_what_it_would_answer_wrongly():
    script = Script("openai")
    continued, kept, plain = backend_for(script).generate([
        ChatRequest(PARTIAL, continue_final_message=True), ChatRequest(QUESTION, stop=("=",), include_stop=True),
        ChatRequest(QUESTION)])
    assert not continued.ok and "continue_final_message needs a server" in continued.error
    assert not kept.ok and "include_stop needs a server" in kept.error
    assert plain.ok and len(script.bodies) == 1          # the refused requests were never sent
    assert "continue_final_message" not in script.bodies[0]
    (unlisted,) = backend_for(Script(owned_by=None)).generate([ChatRequest(PARTIAL, continue_final_message=True)])
    assert "continue_final_message needs a server" in unlisted.error        # no /models: a plain server
    # said to be vLLM (e.g. behind a proxy that hides its /models): sent as vLLM parameters
    forced = backend_for(Script("openai"), server="vllm")
    assert forced.generate([ChatRequest(PARTIAL, continue_final_message=True)])[0].ok


def test_retries_429_and_5xx_with_backoff(sleeps):
    def answer(attempt, body):
        if attempt == 1:
            return httpx.Response(429, json={"error": {"message": "slow down"}}, headers={"retry-after": "7"})
        if attempt in (2, 3):
            return httpx.Response(503, text="overloaded")
        return httpx.Response(200, json=completion())

    script = Script(answer=answer)
    (response,) = backend_for(script, backoff=0.5).generate([ChatRequest(QUESTION)])
    assert response.ok and len(script.bodies) == 4
    assert sleeps[0] == 7.0                                         # Retry-After honoured
    assert 0.5 <= sleeps[1] <= 1.0 and 1.0 <= sleeps[2] <= 2.0     # then exponential, with jitter


def test_gives_up_after_retries_and_never_retries_a_bad_request(sleeps):
    failing = Script(answer=lambda attempt, body: httpx.Response(500, json={"error": {"message": "boom"}}))
    (response,) = backend_for(failing, retries=2).generate([ChatRequest(QUESTION)])
    assert not response.ok and response.error == "HTTP 500: boom (after 3 attempts)" and len(failing.bodies) == 3
    bad = Script(answer=lambda attempt, body: httpx.Response(400, json={"error": {"message": "max_tokens too big"}}))
    (response,) = backend_for(bad).generate([ChatRequest(QUESTION)])
    assert response.error == "HTTP 400: max_tokens too big" and len(bad.bodies) == 1


def test_short_choices_and_malformed_answers_are_failures():
    one = Script(answer=lambda attempt, body: httpx.Response(200, json=completion(choices=1)))
    (response,) = backend_for(one).generate([ChatRequest(QUESTION, n=3, temperature=1.0)])
    assert not response.ok and "1 choices for n=3" in response.error
    refusal = Script(answer=lambda attempt, body: httpx.Response(200, json={"choices": [
        {"index": 0, "message": {"role": "assistant", "content": None, "refusal": "no"}, "finish_reason": "stop"}]}))
    (response,) = backend_for(refusal).generate([ChatRequest(QUESTION)])
    assert response.ok and response.text == ""          # null content (a refusal, tool calls) is an empty answer
    garbled = Script(answer=lambda attempt, body: httpx.Response(200, json={"choices": [{"index": 0}]}))
    (response,) = backend_for(garbled).generate([ChatRequest(QUESTION)])
    assert not response.ok and "malformed response" in response.error and "message" in response.error
    broken = Script(answer=lambda attempt, body: httpx.Response(200, json={"choices": [
        {"index": 0, "message": {"content": "x"}, "logprobs": {"content": [{"token": "x"}]}}]}))
    (response,) = backend_for(broken).generate([ChatRequest(QUESTION, logprobs=2)])
    assert not response.ok and "malformed response" in response.error


def test_timeouts_and_refused_connections_fail_after_retries(sleeps):
    with socket.socket() as silent:              # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
        backend = OpenAIBackend("m", base_url=url, timeout=0.3, retries=1, server="openai")
        (response,) = backend.generate([ChatRequest(QUESTION)])
    assert not response.ok and "ReadTimeout" in response.error and "after 2 attempts" in response.error
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    (response,) = OpenAIBackend("m", base_url=f"http://127.0.0.1:{port}", retries=1).generate([ChatRequest(QUESTION)])
    assert not response.ok and "ConnectError" in response.error       # asking /models already failed


def test_bounded_concurrency():
    in_flight, peak = 0, 0
    lock = threading.Lock()

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": []})
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        await asyncio.sleep(0.02)
        with lock:
            in_flight -= 1
        return httpx.Response(200, json=completion())

    backend = OpenAIBackend("m", base_url="http://test.invalid/v1", concurrency=3,
                            transport=httpx.MockTransport(handler))
    responses = backend.generate([ChatRequest(({"role": "user", "content": str(i)},)) for i in range(12)])
    assert all(r.ok for r in responses) and peak == 3


def test_generate_works_inside_a_running_event_loop():
    backend = backend_for(Script())

    async def stage():
        return backend.generate([ChatRequest(QUESTION)])

    assert asyncio.run(stage())[0].ok


def test_base_url_and_options_are_checked(monkeypatch):
    assert api_root("http://127.0.0.1:8000") == "http://127.0.0.1:8000/v1"
    assert api_root("https://host/openai/v1/") == "https://host/openai/v1"
    with pytest.raises(CurateError, match="base-url"):
        api_root("127.0.0.1:8000")
    with pytest.raises(CurateError, match="server"):
        get_backend("openai", "m", base_url="http://x", server="sglang")
    with pytest.raises(CurateError, match="transformers backend: .*base_url"):
        get_backend("transformers", "smollm2-135m", base_url="http://x")
