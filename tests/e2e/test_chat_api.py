"""ChatEngine, `tuneboard chat` and `tuneboard api` on a model trained by the test: same engine, same answers."""

from __future__ import annotations

import io
import threading
import time

import pytest

from tuneboard.config import Config

from .conftest import NAME

pytestmark = pytest.mark.slow

WHO = [{"role": "user", "content": "你是谁？"}]


@pytest.fixture(scope="module")
def engine(identity_full):
    from tuneboard.inference.hf import ChatEngine

    return ChatEngine(Config(model_name_or_path=str(identity_full), max_new_tokens=48, do_sample=False))


def test_engine_knows_its_name_and_streams(engine):
    pieces = list(engine.stream(WHO))
    assert len(pieces) > 1
    reply = engine.chat(WHO)
    assert "".join(pieces) == reply.text
    assert NAME in reply.text
    assert reply.prompt_tokens > 0 and 0 < reply.completion_tokens <= 48


def test_stop_strings_cut_the_reply(engine):
    full = engine.chat(WHO).text
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    cut = engine.chat(WHO, stop=[stop]).text
    assert stop not in cut and full.startswith(cut) and len(cut) < len(full)


def test_bad_messages_are_rejected(engine):
    from tuneboard.errors import TuneboardError

    with pytest.raises(TuneboardError):
        engine.chat([{"role": "assistant", "content": "hi"}])
    with pytest.raises(TuneboardError):
        engine.chat([{"role": "wizard", "content": "hi"}])


def test_cli_chat_through_stdin(identity_full):
    from tuneboard.cli import chat as chat_cli

    cfg = Config(model_name_or_path=str(identity_full), max_new_tokens=48, do_sample=False)
    out = io.StringIO()
    assert chat_cli.run(cfg, stdin=io.StringIO("你是谁？\nclear\n你是谁？\nexit\n"), stdout=out) == 0
    text = out.getvalue()
    assert text.count(NAME) >= 2 and "History cleared." in text


@pytest.fixture(scope="module")
def api(engine, serve_app):
    from tuneboard.api.server import create_app

    with serve_app(create_app(engine, api_key="sk-test", max_waiting=32)) as url:
        yield f"{url}/v1"


def test_openai_client_non_streaming_and_streaming(api, engine):
    from openai import OpenAI

    client = OpenAI(base_url=api, api_key="sk-test")
    (model,) = [m.id for m in client.models.list().data]
    res = client.chat.completions.create(model=model, messages=WHO, temperature=0)
    assert NAME in res.choices[0].message.content
    assert res.usage.prompt_tokens > 0 and res.usage.completion_tokens > 0
    chunks = list(client.chat.completions.create(model=model, messages=WHO, temperature=0, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == res.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_api_key_is_required(api):
    import openai

    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=api, api_key="wrong").models.list()


def test_sixteen_concurrent_streams_get_complete_unmixed_replies(api, engine):
    from openai import OpenAI

    questions = ["你是谁？", "你叫什么名字？", "Who are you?", "介绍一下你自己。"]
    expected = {q: engine.chat([{"role": "user", "content": q}]).text for q in questions}
    results: dict[int, tuple[str, str]] = {}

    def ask(i: int) -> None:
        q = questions[i % len(questions)]
        client = OpenAI(base_url=api, api_key="sk-test", max_retries=0)
        stream = client.chat.completions.create(
            model=engine.name, messages=[{"role": "user", "content": q}], temperature=0, stream=True
        )
        results[i] = (q, "".join(c.choices[0].delta.content or "" for c in stream if c.choices))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(results) == 16
    for q, text in results.values():
        assert text == expected[q]


def test_queue_bound_answers_429(engine):
    import httpx
    from fastapi.testclient import TestClient

    from tuneboard.api.server import create_app

    app = create_app(engine, max_waiting=0, max_concurrent=1)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        gate = engine.lock
        gate.acquire()  # the model is busy: the one slot is taken by a request waiting on the lock
        try:
            first = threading.Thread(
                target=lambda: client.post("/v1/chat/completions", json={"messages": WHO}), daemon=True
            )
            first.start()
            time.sleep(0.5)
            busy = client.post("/v1/chat/completions", json={"messages": WHO})
        finally:
            gate.release()
        first.join(60)
    assert busy.status_code == 429 and busy.headers["retry-after"]
    assert busy.json()["error"]["type"] == "rate_limit_error"
    assert isinstance(httpx.Response, type)


def test_vllm_backend_gives_a_clear_error(monkeypatch):
    import importlib.util

    from tuneboard.errors import TuneboardError
    from tuneboard.inference import make_engine

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)  # vllm not installed
    with pytest.raises(TuneboardError, match="vllm"):
        make_engine(Config(infer_backend="vllm"))
