"""Generations of `tuneboard api` end when nobody waits for them, and never run past the model's context: a
non-streaming client that leaves cancels its generation, max_tokens is capped to what the context leaves
after the prompt (finish_reason "length"), and SIGTERM stops the server within seconds even while it generates.

A slow scripted engine (one piece every 20 ms for 30 s unless cancelled) and ChatEngine on builtin:tiny; the
real app on 127.0.0.1, and for SIGTERM the real `tuneboard api` entry point in a subprocess."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from tuneboard.config import Config
from tuneboard.inference.engine import Engine, Reply

WHO = [{"role": "user", "content": "你是谁？"}]


class Slow(Engine):
    """Streams "x" every 20 ms for up to 30 s; `ended` gets "cancelled" or "ran out" as each generation ends."""

    name = "slow"

    def __init__(self) -> None:
        self.ended: queue.Queue = queue.Queue()

    def encode(self, messages, system=None, tools=None) -> list[int]:
        return [1, 2, 3]

    def stream(self, messages, system=None, stop=None, reply=None, cancel=None, tools=None, **gen):
        reply = reply if reply is not None else Reply()
        start = time.time()
        try:
            while time.time() - start < 30 and not (cancel is not None and cancel.is_set()):
                time.sleep(0.02)
                reply.text += "x"
                yield "x"
        finally:
            self.ended.put("cancelled" if cancel is not None and cancel.is_set() else "ran out")
            if cancel is not None and cancel.is_set():
                reply.finish_reason = "cancelled"


def wait_idle(app, timeout: float = 10) -> None:
    slots, end = app.state.slots, time.time() + timeout
    while slots.free != slots.capacity:
        assert time.time() < end, "a slot is still held"
        time.sleep(0.02)


def test_a_non_streaming_client_that_leaves_cancels_its_generation(serve_app):
    from tuneboard.api.server import create_app

    engine = Slow()
    app = create_app(engine)
    with serve_app(app) as url:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/v1/chat/completions", json={"messages": WHO}, timeout=0.5)
        assert engine.ended.get(timeout=5) == "cancelled"
        wait_idle(app)


@pytest.fixture(scope="module")
def tiny_engine():
    from tuneboard.inference.hf import ChatEngine

    return ChatEngine(Config(model_name_or_path="builtin:tiny", do_sample=False, max_new_tokens=512))


def test_the_context_is_read_from_the_model(tiny_engine):
    cfg, tok = tiny_engine.model.config, tiny_engine.tokenizer
    assert tiny_engine.context_length == min(cfg.max_position_embeddings, tok.model_max_length)


def test_max_tokens_is_capped_to_what_the_context_leaves(tiny_engine, serve_app, monkeypatch):
    from openai import OpenAI

    from tuneboard.api.server import create_app

    prompt = len(tiny_engine.encode(WHO))
    monkeypatch.setattr(tiny_engine, "context_length", prompt + 3)
    ids, settings = tiny_engine.prepare(WHO, max_new_tokens=100)
    assert len(ids) == prompt and settings.max_new_tokens == 3
    with serve_app(create_app(tiny_engine)) as url:
        client = OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
        for stream in (False, True):
            kw = dict(model="builtin:tiny", messages=WHO, max_tokens=64, temperature=0)
            if not stream:
                res = client.chat.completions.create(**kw)
                assert res.usage.completion_tokens == 3 and res.choices[0].finish_reason == "length"
            else:
                options = {"include_usage": True}
                chunks = list(client.chat.completions.create(**kw, stream=True, stream_options=options))
                assert chunks[-1].usage.completion_tokens == 3 and chunks[-1].choices == []
                assert chunks[-2].choices[0].finish_reason == "length"


SERVE = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("api_cancel_test", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
from tuneboard import inference
from tuneboard.api import server
from tuneboard.config import Config
inference.make_engine = lambda cfg: module.Slow()
server.run(Config(), host="127.0.0.1", port=int(sys.argv[2]))
"""


def test_sigterm_stops_the_server_within_seconds_while_it_generates():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "API_KEY": ""}
    proc = subprocess.Popen([sys.executable, "-c", SERVE, __file__, str(port)], env=env)
    try:
        end = time.time() + 60
        while True:
            assert proc.poll() is None and time.time() < end, "the server did not start"
            try:
                health = httpx.get(f"{url}/health", timeout=1).json()
                break
            except httpx.TransportError:
                time.sleep(0.1)
        answers: dict[str, object] = {}

        def plain() -> None:
            try:
                answers["plain"] = httpx.post(
                    f"{url}/v1/chat/completions", json={"messages": WHO}, timeout=60
                )
            except httpx.TransportError as exc:
                answers["plain"] = exc

        def streamed() -> None:
            body = {"messages": WHO, "stream": True}
            try:
                with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=60) as r:
                    answers["stream"] = [line for line in r.iter_lines() if line.startswith("data: ")]
            except httpx.TransportError as exc:
                answers["stream"] = exc

        clients = [threading.Thread(target=plain), threading.Thread(target=streamed)]
        for t in clients:
            t.start()
        while httpx.get(f"{url}/health", timeout=5).json()["slots_free"] > health["slots"] - 2:
            assert time.time() < end, "the requests were never admitted"
            time.sleep(0.05)
        time.sleep(0.3)  # both are generating
        start = time.time()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        took = time.time() - start
        for t in clients:
            t.join(10)
        print(f"\nstopped {took:.2f}s after SIGTERM")
        assert took < 8
        plain_answer = answers["plain"]
        assert isinstance(plain_answer, httpx.Response) and plain_answer.status_code == 503
        assert plain_answer.json()["error"]["type"] == "server_error"
        events = answers["stream"]
        assert isinstance(events, list) and events[-1] == "data: [DONE]"
        assert "shutting down" in json.loads(events[-2][len("data: ") :])["error"]["message"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_max_concurrent_and_max_waiting_bound_admission_and_health_reports_them(tiny_engine):
    from fastapi.testclient import TestClient

    from tuneboard.api.server import create_app

    app = create_app(tiny_engine, max_concurrent=2, max_waiting=1)
    body = {"messages": WHO, "max_tokens": 4, "temperature": 0}
    alone = tiny_engine.chat(WHO, max_new_tokens=4, temperature=0).text
    with TestClient(app, base_url="http://127.0.0.1") as client:
        health = client.get("/health").json()
        assert health["max_concurrent"] == 2 and health["max_waiting"] == 1 and health["slots"] == 3
        assert {"batch", "waiting", "admitted"} <= set(health)
        replies: list[httpx.Response] = []
        with tiny_engine.lock:  # the model is busy: admitted requests wait for it
            threads = [
                threading.Thread(
                    target=lambda: replies.append(client.post("/v1/chat/completions", json=body))
                )
                for _ in range(3)
            ]
            for t in threads:
                t.start()
            end = time.time() + 30
            while app.state.slots.free:
                assert time.time() < end, "the three requests were never admitted"
                time.sleep(0.02)
            assert client.get("/health").json()["admitted"] == 3
            busy = client.post("/v1/chat/completions", json=body)  # the fourth is beyond both bounds
            assert busy.status_code == 429 and float(busy.headers["retry-after"]) > 0
            assert busy.json()["error"]["type"] == "rate_limit_error"
        for t in threads:
            t.join(60)
    assert [r.status_code for r in replies] == [200, 200, 200]
    assert {r.json()["choices"][0]["message"]["content"] for r in replies} == {alone}


class SlowEncode(Slow):
    """Encoding a prompt takes 2 s (a long prompt with a real tokenizer), holding the thread that does it."""

    def encode(self, messages, system=None, tools=None) -> list[int]:
        time.sleep(2)
        return [1, 2, 3]


def test_health_answers_while_a_long_prompt_is_encoded(serve_app):
    """Issue 20 item 5: tokenizing on the event loop stalled /health for as long as the encoding took."""
    from tuneboard.api.server import create_app

    app = create_app(SlowEncode())
    with serve_app(app) as url:
        body = {"messages": WHO, "max_tokens": 4}
        left = []

        def post() -> None:  # it then streams for 30 s: this client leaves after 3, which cancels it
            try:
                httpx.post(f"{url}/v1/chat/completions", json=body, timeout=3)
            except httpx.ReadTimeout:
                left.append(True)

        client = threading.Thread(target=post)
        client.start()
        time.sleep(0.3)  # the request is now being encoded
        start = time.time()
        assert httpx.get(f"{url}/health", timeout=5).status_code == 200
        assert time.time() - start < 1.0, "/health waited for the encoding"
        client.join(timeout=10)
        assert left == [True]
        wait_idle(app)


class Gathering(Slow):
    """Each generation waits until `parties` generations run at the same time (or fails after 20 s)."""

    def __init__(self, parties: int) -> None:
        super().__init__()
        self.gate = threading.Barrier(parties, timeout=20)

    def stream(self, messages, system=None, stop=None, reply=None, cancel=None, tools=None, **gen):
        reply = reply if reply is not None else Reply()
        self.gate.wait()
        reply.text = "ok"
        yield "ok"


def test_every_admitted_non_streaming_request_generates_at_once(serve_app):
    """asyncio's default thread pool (cpu_count + 4 threads) held non-streaming requests back from the engine's
    batch: with 16 admitted on 2 cores, only 6 generated together."""
    from tuneboard.api.server import create_app

    parties = (os.cpu_count() or 1) + 8  # more than the default pool's threads
    app = create_app(Gathering(parties), max_concurrent=parties, max_waiting=0)
    with serve_app(app) as url:
        body = {"messages": WHO, "max_tokens": 4}
        codes: list[int] = []

        def ask() -> None:
            codes.append(httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60).status_code)

        clients = [threading.Thread(target=ask) for _ in range(parties)]
        for t in clients:
            t.start()
        for t in clients:
            t.join(60)
        assert codes == [200] * parties  # a generation left waiting would break the barrier: 500
        wait_idle(app)
