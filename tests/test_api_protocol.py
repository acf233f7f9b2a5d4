"""The API's door: what `tuneboard api` accepts that real clients send (content as a list of text parts,
max_completion_tokens) and how it refuses the rest: 400 with an OpenAI-shaped JSON error for malformed bodies
(100,000-deep JSON, a lone surrogate, NaN, values out of range, non-text parts, a prompt beyond the context),
413 beyond the body size limit, 415 for a body not declared as JSON, and 400 for a Host header that is not the
server's own (DNS rebinding).

A scripted engine over the qwen template and the tiny tokenizer; the real app on 127.0.0.1 (serve_app), asked
with the openai client and, for bodies no client would send, raw httpx."""

from __future__ import annotations

import json

import httpx
import pytest

from tuneboard.data.templates.named import get_template
from tuneboard.inference.engine import Engine, Reply

ASK = [{"role": "user", "content": "你好"}]


class Echo(Engine):
    """Replies "ok"; records the messages and generation keywords of each request."""

    def __init__(self, tokenizer, context_length: int | None = None) -> None:
        self.template, self.tokenizer, self.name = get_template("qwen"), tokenizer, "echo"
        self.context_length = context_length
        self.seen: list[tuple[list, dict]] = []

    def stream(self, messages, system=None, stop=None, reply=None, cancel=None, tools=None, **gen):
        reply = reply if reply is not None else Reply()
        reply.prompt_tokens = len(self.encode(messages, system, tools))
        self.seen.append((messages, gen | {"stop": stop}))
        reply.text, reply.completion_tokens = "ok", 1
        yield "ok"


@pytest.fixture(scope="module")
def echo(tiny_tokenizer):
    return Echo(tiny_tokenizer)


@pytest.fixture(scope="module")
def url(echo, serve_app):
    from tuneboard.api.server import create_app

    with serve_app(create_app(echo)) as base:
        yield base


def post(url: str, body: str | bytes, **headers: str) -> httpx.Response:
    headers = {"Content-Type": "application/json", **headers}
    return httpx.post(f"{url}/v1/chat/completions", content=body, headers=headers, timeout=30)


def openai_error(r: httpx.Response, status: int) -> str:
    """The error message of an OpenAI-shaped JSON error response with this status."""
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/json"), r.headers
    error = r.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert len(error["message"]) < 500, "the message must not echo the body"
    return error["message"]


def test_text_parts_and_max_completion_tokens_are_read(url, echo):
    from openai import OpenAI

    client = OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
    parts = [{"type": "text", "text": "第一段"}, {"type": "text", "text": "第二段"}]
    res = client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": parts}], max_completion_tokens=5
    )
    assert res.choices[0].message.content == "ok"
    messages, gen = echo.seen[-1]
    assert messages[0]["content"] == "第一段\n第二段"
    assert gen["settings"].max_new_tokens == 5


def test_non_text_parts_are_refused(url):
    import openai

    client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    with pytest.raises(openai.BadRequestError, match="only text parts"):
        client.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": [{"type": "text", "text": "看图"}, image]}]
        )


def test_deeply_nested_json_is_a_400_json_error(url):
    body = '{"messages": ' + "[" * 100_000 + "]" * 100_000 + "}"
    assert "JSON" in openai_error(post(url, body), 400)


def test_a_lone_surrogate_is_a_400_json_error(url):
    body = '{"messages": [{"role": "user", "content": "\\ud800"}]}'
    openai_error(post(url, body), 400)
    raw = b'{"messages": [{"role": "user", "content": "\xed\xa0\x80"}]}'  # the surrogate as (invalid) UTF-8
    openai_error(post(url, raw), 400)


@pytest.mark.parametrize(
    "extra, word",
    [
        ({"temperature": float("nan")}, "temperature"),
        ({"temperature": -0.5}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"max_completion_tokens": 2.5}, "max_completion_tokens"),
        ({"stop": [1]}, "stop"),
        ({"stream": "yes"}, "stream"),
    ],
)
def test_values_out_of_range_are_400(url, extra, word):
    body = json.dumps({"messages": ASK, **extra})  # json.dumps writes NaN as NaN, as some clients do
    assert word in openai_error(post(url, body), 400)


def test_bodies_that_are_not_requests_are_400(url):
    for body in ("", "[]", "nul", '{"messages": "hi"}', '{"messages": [{"content": "hi"}]}'):
        openai_error(post(url, body), 400)
    assert "messages" in openai_error(post(url, '{"messages": [{"role": "user"}]}'), 400)


def test_unknown_fields_are_tolerated(url):
    body = {"messages": ASK, "seed": 1, "n": 1, "user": "u", "stream_options": {"include_usage": True}}
    r = post(url, json.dumps(body))
    assert r.status_code == 200, r.text


def test_a_body_not_declared_as_json_is_415(url):
    body = json.dumps({"messages": ASK})
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        r = post(url, body, **{"Content-Type": ctype})  # what a cross-site form or fetch may send
        assert r.status_code == 415 and r.json()["error"]["type"] == "invalid_request_error", r.text
    r = httpx.post(f"{url}/v1/chat/completions", content=body.encode(), timeout=30)  # no Content-Type
    assert r.status_code == 415
    assert post(url, body, **{"Content-Type": "application/json; charset=utf-8"}).status_code == 200


def test_a_body_beyond_the_size_limit_is_413(url):
    from tuneboard.api.guards import MAX_BODY_BYTES

    big = json.dumps({"messages": [{"role": "user", "content": "x" * MAX_BODY_BYTES}]})
    r = post(url, big)
    assert r.status_code == 413 and r.json()["error"]["type"] == "invalid_request_error", r.text[:200]

    def chunks():  # no Content-Length: the limit holds while the body is read
        yield big[: len(big) // 2].encode()
        yield big[len(big) // 2 :].encode()

    r = httpx.post(
        f"{url}/v1/chat/completions",
        content=chunks(),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 413


def test_a_prompt_beyond_the_context_is_400(tiny_tokenizer, serve_app):
    from tuneboard.api.server import create_app

    engine = Echo(tiny_tokenizer, context_length=64)  # the short prompt is 47 tokens
    with serve_app(create_app(engine)) as base:
        long = json.dumps({"messages": [{"role": "user", "content": "你好" * 100}]})
        assert "context" in openai_error(post(base, long), 400)
        assert post(base, json.dumps({"messages": ASK})).status_code == 200
    assert len(engine.seen) == 1  # the long prompt never reached generation


def test_only_the_servers_own_host_names_are_answered(url):
    port = url.rsplit(":", 1)[1]
    body = json.dumps({"messages": ASK})
    for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1.evil.example:{port}"):
        # a page on evil.example whose name was rebound to 127.0.0.1
        assert "Host" in openai_error(post(url, body, Host=host), 400)
        assert httpx.get(f"{url}/v1/models", headers={"Host": host}).status_code == 400
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "localhost"):
        assert post(url, body, Host=host).status_code == 200, host


def test_allowed_hosts_and_wildcard_binds(echo, serve_app):
    from tuneboard.api.server import create_app

    body = json.dumps({"messages": ASK})
    with serve_app(create_app(echo, allowed_hosts=["tuneboard.lan"])) as base:
        assert post(base, body, Host="tuneboard.lan:8000").status_code == 200
        assert post(base, body, Host="other.lan").status_code == 400
    with serve_app(create_app(echo, bound_host="0.0.0.0")) as base:
        assert post(base, body, Host="192.168.1.7:8000").status_code == 200  # every address of the machine
        assert post(base, body, Host="[fe80::1]:8000").status_code == 200
        assert post(base, body, Host="evil.example").status_code == 400  # names still have to be listed
    with serve_app(create_app(echo, allowed_hosts=["*"])) as base:
        assert post(base, body, Host="anything.example").status_code == 200


def client_of(url: str):
    from openai import OpenAI

    return OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)


def test_n_seed_and_stop_reach_the_engine(url, echo):
    res = client_of(url).chat.completions.create(model="echo", messages=ASK, n=3, seed=7, stop="。")
    assert [c.index for c in res.choices] == [0, 1, 2] and {c.message.content for c in res.choices} == {"ok"}
    assert res.usage.completion_tokens == 3 and res.usage.prompt_tokens > 0
    calls = echo.seen[-3:]
    assert sorted(gen["settings"].seed for _, gen in calls) == [7, 8, 9]  # each choice its own seed
    assert all(gen["stop"] == ["。"] for _, gen in calls)


def test_stream_usage_comes_only_when_asked_for(url):
    client = client_of(url)
    plain = list(client.chat.completions.create(model="echo", messages=ASK, stream=True))
    assert all(c.usage is None for c in plain) and plain[-1].choices[0].finish_reason == "stop"
    options = {"include_usage": True}
    counted = list(
        client.chat.completions.create(model="echo", messages=ASK, stream=True, stream_options=options)
    )
    assert counted[-1].choices == [] and counted[-1].usage.completion_tokens == 1
    assert counted[-2].choices[0].finish_reason == "stop"
    assert "".join(c.choices[0].delta.content or "" for c in counted if c.choices) == "ok"


def test_an_unknown_model_is_404(url):
    import openai

    with pytest.raises(openai.NotFoundError, match="'gpt-4o' is not served here; this server serves 'echo'"):
        client_of(url).chat.completions.create(model="gpt-4o", messages=ASK)


@pytest.mark.parametrize(
    "extra, words",
    [
        ({"logprobs": True}, "logprobs"),
        ({"logprobs": True, "top_logprobs": 3}, "logprobs"),
        ({"response_format": {"type": "json_object"}}, "json_object"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "json_schema"),
        ({"n": 2, "stream": True}, "n > 1"),
        ({"n": 0}, "'n' must be"),
        ({"n": 100}, "'n' must be"),
        ({"seed": 1.5}, "'seed' must be"),
        ({"stream_options": {"include_usage": "yes"}}, "stream_options"),
    ],
)
def test_what_is_not_offered_is_refused_clearly(url, extra, words):
    assert words in openai_error(post(url, json.dumps({"messages": ASK, **extra})), 400)


def test_what_is_offered_in_its_default_form_is_accepted(url):
    body = {"messages": ASK, "logprobs": False, "response_format": {"type": "text"}, "n": 1}
    r = post(url, json.dumps(body))
    assert r.status_code == 200 and r.json()["choices"][0]["logprobs"] is None, r.text
