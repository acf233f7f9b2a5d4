"""`tuneboard api` under load: 64 concurrent clients (streaming and not) for a bounded time. Every request is
answered completely or with 429/503 and Retry-After, replies never mix (each equals the greedy reply to its
own prompt), memory stays flat, and a client that leaves mid-stream (or before the first byte) frees its slot.

The server is the real app (create_app + uvicorn) on 127.0.0.1, in this process, over builtin:tiny."""

from __future__ import annotations

import gc
import json
import socket
import threading
import time
from collections import Counter

import pytest

from tuneboard.config import Config

pytestmark = pytest.mark.slow

CLIENTS = 64
LOAD_SECONDS = 30
MAX_WAITING = 16
PROMPTS = ["你是谁？", "What is 2+2?", "Name a colour.", "患者：我头疼。", "你好", "Say hello."]
RSS_GROWTH_LIMIT = 64 * 2**20


def rss() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def engine():
    from tuneboard.inference.hf import ChatEngine

    return ChatEngine(Config(model_name_or_path="builtin:tiny", max_new_tokens=8, do_sample=False))


@pytest.fixture(scope="module")
def reference(engine) -> dict[str, str]:
    """The greedy reply to each prompt, asked alone."""
    return {p: engine.chat([{"role": "user", "content": p}]).text for p in PROMPTS}


@pytest.fixture(scope="module")
def server(engine, serve_app):
    from tuneboard.api.server import create_app

    app = create_app(engine, max_waiting=MAX_WAITING)
    with serve_app(app) as url:
        yield app, url


def wait_idle(app, timeout: float = 15) -> float:
    """Seconds until every slot is free again (fails after `timeout`)."""
    slots, start = app.state.slots, time.time()
    while slots.free != slots.capacity:
        assert time.time() - start < timeout, f"{slots.capacity - slots.free} slot(s) still held"
        time.sleep(0.05)
    return time.time() - start


def ask(client, base: str, prompt: str, stream: bool) -> tuple[str, str | None]:
    """One request -> ("ok", text) | ("busy", None); anything else raises AssertionError."""
    body = {"model": "builtin:tiny", "messages": [{"role": "user", "content": prompt}], "stream": stream}
    url = f"{base}/v1/chat/completions"
    if not stream:
        r = client.post(url, json=body)
        if r.status_code in (429, 503):
            assert float(r.headers["retry-after"]) > 0, r.headers
            return "busy", r.headers["retry-after"]
        assert r.status_code == 200, (r.status_code, r.text)
        data = r.json()
        assert data["object"] == "chat.completion"
        return "ok", data["choices"][0]["message"]["content"]
    with client.stream("POST", url, json=body) as r:
        if r.status_code in (429, 503):
            r.read()
            assert float(r.headers["retry-after"]) > 0, r.headers
            return "busy", r.headers["retry-after"]
        assert r.status_code == 200, r.status_code
        events = [line[len("data: ") :] for line in r.iter_lines() if line.startswith("data: ")]
    assert events and events[-1] == "[DONE]", f"incomplete stream: {events[-3:]}"
    chunks = [json.loads(e) for e in events[:-1]]
    assert len({c["id"] for c in chunks}) == 1, "chunks of two completions in one stream"
    assert chunks[-1]["choices"][0]["finish_reason"] is not None
    return "ok", "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)


def load(base: str, reference: dict[str, str], seconds: float) -> Counter:
    import httpx

    tally: Counter = Counter()
    failures: list[str] = []
    lock = threading.Lock()
    deadline = time.time() + seconds

    def client_loop(k: int) -> None:
        with httpx.Client(timeout=120) as client:
            i = k
            while time.time() < deadline:
                prompt, stream = PROMPTS[i % len(PROMPTS)], bool(i % 2)
                try:
                    outcome, value = ask(client, base, prompt, stream)
                    if outcome == "ok" and value != reference[prompt]:
                        raise AssertionError(f"reply to {prompt!r} is {value!r}, alone {reference[prompt]!r}")
                except Exception as exc:  # noqa: BLE001 - every failure is reported below
                    with lock:
                        failures.append(f"{type(exc).__name__}: {exc}")
                    return
                with lock:
                    tally[(outcome, "stream" if stream else "plain")] += 1
                if outcome == "busy":
                    time.sleep(min(float(value), 1.0))
                i += 1

    threads = [threading.Thread(target=client_loop, args=(k,)) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 180)
    assert not any(t.is_alive() for t in threads), "a client hung"
    assert not failures, f"{len(failures)} failed requests, e.g. {failures[:3]}"
    return tally


def test_sixty_four_clients_get_whole_unmixed_replies_or_429_and_memory_stays_flat(server, reference):
    app, base = server
    assert len(set(reference.values())) >= 3, "the prompts must have different replies to detect mixing"
    load(base, reference, 10)  # warm-up: threads, connections, allocator pools
    wait_idle(app)
    gc.collect()
    before = rss()
    start = time.time()
    tally = load(base, reference, LOAD_SECONDS)
    took = time.time() - start
    wait_idle(app)
    gc.collect()
    growth = rss() - before
    ok = tally[("ok", "stream")] + tally[("ok", "plain")]
    busy = tally[("busy", "stream")] + tally[("busy", "plain")]
    print(
        f"\nload: {CLIENTS} clients for {took:.0f}s: {ok} complete replies "
        f"({tally[('ok', 'stream')]} streamed), {busy} answered 429, 0 failed; RSS growth {growth / 2**20:.1f} MiB"
    )
    assert tally[("ok", "stream")] > 0 and tally[("ok", "plain")] > 0
    slots = app.state.slots.capacity
    assert slots == 16 + MAX_WAITING  # max_concurrent (the engine's batch) + the queue
    assert busy > 0, f"{CLIENTS} clients against {slots} slots should have been turned away sometimes"
    assert growth < RSS_GROWTH_LIMIT, f"RSS grew by {growth / 2**20:.1f} MiB under load"


def test_a_client_that_leaves_mid_stream_frees_its_slot(server, reference):
    import httpx

    app, base = server
    wait_idle(app)
    body = {"messages": [{"role": "user", "content": PROMPTS[0]}], "stream": True, "max_tokens": 2000}
    with httpx.Client(timeout=60) as client:
        with client.stream("POST", f"{base}/v1/chat/completions", json=body) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if '"content"' in line and '"role"' not in line:
                    break  # one token in: generation of up to 2000 tokens is under way
            assert app.state.slots.free == app.state.slots.capacity - 1
        # leaving the block closes the connection mid-stream
    freed = wait_idle(app, timeout=10)
    print(f"\nslot freed {freed:.2f}s after the client left mid-stream")
    with httpx.Client(timeout=60) as client:
        assert ask(client, base, PROMPTS[1], stream=True) == ("ok", reference[PROMPTS[1]])


def test_a_client_that_leaves_before_the_first_byte_frees_its_slot(server, reference):
    app, base = server
    wait_idle(app)
    port = int(base.rsplit(":", 1)[1])
    payload = json.dumps(
        {"messages": [{"role": "user", "content": PROMPTS[2]}], "stream": True, "max_tokens": 2000}
    ).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode()
    admitted = app.state.slots.admitted
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(head + payload)
        # closed at once: the response may not have started
    end = time.time() + 15
    while app.state.slots.admitted < admitted + 5:  # the server took each request (and a slot for it)
        assert time.time() < end, "the server never admitted the requests"
        time.sleep(0.01)
    freed = wait_idle(app, timeout=15)
    print(f"\n5 clients that left at once: all slots free after {freed:.2f}s")
    import httpx

    with httpx.Client(timeout=60) as client:
        assert ask(client, base, PROMPTS[3], stream=False) == ("ok", reference[PROMPTS[3]])
