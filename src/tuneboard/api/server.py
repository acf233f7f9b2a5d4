"""`tuneboard api`: an OpenAI-compatible server over ChatEngine (models, chat completions, streaming).

Interface layer: no generation logic here. One model, generation serialised by the engine; at most
`max_waiting` requests queue behind it, the rest get 429 with Retry-After; a client that disconnects
(mid-stream, or while it waits) cancels its generation and frees its slot.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import sys
import threading
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse

from ..config import Config
from ..data.toolcalls import find_calls, openai_calls
from ..errors import TuneboardError
from ..inference.engine import partial_stop

DEFAULT_PORT = 8000


def _error(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> Any:
    body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return JSONResponse(body, status_code=status, headers=headers)


class Slots:
    """Requests admitted at once: one generating and the rest waiting for the model; beyond that, 429.
    `free` and `admitted` (a running count) are read by /health and by the load test."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.admitted = 0
        self._free = capacity
        self._lock = threading.Lock()

    @property
    def free(self) -> int:
        return self._free

    def try_acquire(self) -> bool:
        with self._lock:
            if self._free == 0:
                return False
            self._free -= 1
            self.admitted += 1
            return True

    def release(self) -> None:
        with self._lock:
            if self._free >= self.capacity:
                raise RuntimeError("a request slot was released twice")
            self._free += 1


def _check_request(body: Any) -> str | None:
    """What is wrong with a chat completion request, or None."""
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        return "'messages' must be a list"
    if not all(isinstance(m, dict) for m in body["messages"]):
        return "each message must be an object with 'role' and 'content'"
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            return f"'{key}' must be a positive integer"
    for key in ("temperature", "top_p"):
        value = body.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0
        ):
            return f"'{key}' must be a number >= 0"
    stop = body.get("stop")
    if (
        stop is not None
        and not isinstance(stop, str)
        and not (isinstance(stop, list) and all(isinstance(s, str) for s in stop))
    ):
        return "'stop' must be a string or a list of strings"
    tools = body.get("tools")
    if tools is not None and not (isinstance(tools, list) and all(_is_function(t) for t in tools)):
        return '\'tools\' must be a list of {"type": "function", "function": {"name": ...}} objects'
    if body.get("tool_choice") not in (None, "auto", "none"):
        return (
            "'tool_choice' may be 'auto' or 'none' (the model decides whether to call; no call can be forced)"
        )
    return None


def _is_function(tool: Any) -> bool:
    if not isinstance(tool, dict) or tool.get("type") != "function":
        return False
    fn = tool.get("function")
    return isinstance(fn, dict) and isinstance(fn.get("name"), str)


def _tools(body: dict) -> list | None:
    return None if body.get("tool_choice") == "none" else body.get("tools") or None


def create_app(engine: Any, api_key: str | None = None, max_waiting: int = 16) -> Any:
    app = FastAPI(title="tuneboard API", docs_url=None, redoc_url=None)
    slots = Slots(max_waiting + 1)  # one generating + max_waiting queued
    app.state.slots = slots
    model_id = os.path.basename(str(engine.name).rstrip("/")) or str(engine.name)

    @app.middleware("http")
    async def auth(request: Request, call_next):
        if api_key and request.url.path.startswith("/v1/"):
            given = request.headers.get("authorization", "")
            expected = f"Bearer {api_key}"
            if not hmac.compare_digest(given.encode(), expected.encode()):
                return _error(401, "invalid or missing API key", "invalid_request_error")
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        return _error(400, f"invalid request: {exc.errors()[:1]}", "invalid_request_error")

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": model_id, "slots_free": slots.free, "slots": slots.capacity}

    @app.get("/v1/models")
    async def models():
        return {
            "object": "list",
            "data": [{"id": model_id, "object": "model", "created": 0, "owned_by": "tuneboard"}],
        }

    @app.post("/v1/chat/completions")
    async def completions(request: Request):
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "the request body is not valid JSON", "invalid_request_error")
        problem = _check_request(body)
        if problem:
            return _error(400, problem, "invalid_request_error")
        stop = body.get("stop")
        stop = [stop] if isinstance(stop, str) else (stop or [])
        gen = {
            "temperature": body.get("temperature"),
            "top_p": body.get("top_p"),
            "max_new_tokens": body.get("max_tokens") or body.get("max_completion_tokens"),
        }
        if gen["temperature"] is not None:
            gen["do_sample"] = gen["temperature"] > 0
        tools = _tools(body)
        markers = getattr(engine.template, "call_markers", None) if tools else None
        try:
            engine.encode(body["messages"], tools=tools)  # validate before taking a slot
        except TuneboardError as exc:
            return _error(400, str(exc), "invalid_request_error")
        if not slots.try_acquire():
            return _error(429, "the server is busy; retry shortly", "rate_limit_error", {"Retry-After": "1"})
        rid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        if body.get("stream"):
            # the generation thread starts now and owns the slot: it is released however the response ends,
            # even when the client leaves before the first byte is sent
            gen["tools"] = tools
            stream = _Stream(engine, body["messages"], stop, gen, slots, asyncio.get_running_loop())
            return _EventStream(_sse(stream, rid, created, model_id, markers), stream.cancel)
        cancel = threading.Event()
        watcher = asyncio.create_task(_cancel_on_disconnect(request, cancel))
        try:
            reply = await asyncio.to_thread(
                engine.chat, body["messages"], stop=stop, cancel=cancel, tools=tools, **gen
            )
        finally:
            watcher.cancel()
            slots.release()
        message: dict[str, Any] = {"role": "assistant", "content": reply.text}
        found = find_calls(reply.text, markers) if markers else None
        if found:
            message = {"role": "assistant", "content": found[0] or None, "tool_calls": openai_calls(found[1])}
        return {
            "id": rid,
            "object": "chat.completion",
            "created": created,
            "model": model_id,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if found else reply.finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": reply.prompt_tokens,
                "completion_tokens": reply.completion_tokens,
                "total_tokens": reply.prompt_tokens + reply.completion_tokens,
            },
        }

    return app


async def _cancel_on_disconnect(request: Request, cancel: threading.Event) -> None:
    """A non-streaming client that leaves stops its generation (checked a few times a second)."""
    while not await request.is_disconnected():
        await asyncio.sleep(0.25)
    cancel.set()


class _Stream:
    """One streaming generation: a thread (holding the request's slot until it ends) feeding an asyncio queue.
    Setting `cancel` stops it at the next token."""

    DONE = object()

    def __init__(self, engine, messages, stop, gen, slots: Slots, loop: asyncio.AbstractEventLoop) -> None:
        from ..inference.engine import Reply

        self.queue: asyncio.Queue = asyncio.Queue()
        self.cancel = threading.Event()
        self.reply = Reply()
        self._args = (engine, messages, stop, gen, slots, loop)
        threading.Thread(target=self._produce, daemon=True).start()

    def _produce(self) -> None:
        engine, messages, stop, gen, slots, loop = self._args
        put = lambda item: loop.call_soon_threadsafe(self.queue.put_nowait, item)  # noqa: E731
        try:
            if not self.cancel.is_set():
                for piece in engine.stream(messages, stop=stop, reply=self.reply, cancel=self.cancel, **gen):
                    put(piece)
                    if self.cancel.is_set():
                        break
        except Exception as exc:  # reported to the client as an error chunk
            put(exc)
        finally:
            slots.release()
            try:
                put(self.DONE)
            except RuntimeError:  # the server's loop is closed (shutdown)
                pass


class _EventStream(StreamingResponse):
    """text/event-stream that cancels its generation whenever the response ends: finished, failed, or the
    client gone (also before the body generator ever ran)."""

    def __init__(self, content: Any, cancel: threading.Event) -> None:
        super().__init__(content, media_type="text/event-stream")
        self.cancel = cancel

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.cancel.set()


async def _sse(stream: _Stream, rid, created, model_id, markers: tuple[str, str] | None = None):
    """Server-sent events in OpenAI's chunk format, read from the generation thread's queue. With tools
    (`markers`), text from the first call marker on is held back and sent as `tool_calls` at the end."""
    reply = stream.reply
    text, sent = "", 0

    def chunk(delta: dict, finish: str | None = None, usage: dict | None = None) -> str:
        data: dict[str, Any] = {
            "id": rid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model_id,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if usage is not None:
            data["usage"] = usage
        return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

    try:
        yield chunk({"role": "assistant", "content": ""})
        while True:
            item = await stream.queue.get()
            if item is stream.DONE:
                break
            if isinstance(item, Exception):
                err = {"error": {"message": str(item), "type": "server_error"}}
                yield f"data: {json.dumps(err)}\n\n"
                break
            if not markers:
                yield chunk({"content": item})
                continue
            text += item
            held = text.find(markers[0])
            safe = held if held >= 0 else len(text) - partial_stop(text, [markers[0]])
            if safe > sent:
                yield chunk({"content": text[sent:safe]})
                sent = safe
        usage = {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        }
        found = find_calls(text, markers) if markers else None
        if found:
            calls = [{"index": k, **call} for k, call in enumerate(openai_calls(found[1]))]
            yield chunk({"tool_calls": calls})
        elif sent < len(text):  # no clean call after all: the held text is content
            yield chunk({"content": text[sent:]})
        yield chunk({}, "tool_calls" if found else reply.finish_reason, usage)
        yield "data: [DONE]\n\n"
    finally:
        stream.cancel.set()  # client gone or finished: stop generating, the thread releases the slot


def run(cfg: Config, host: str | None = None, port: int | None = None) -> int:
    import uvicorn

    from ..inference import make_engine

    host = host or os.environ.get("API_HOST", "127.0.0.1")
    port = int(port or os.environ.get("API_PORT", DEFAULT_PORT))
    api_key = os.environ.get("API_KEY") or None
    if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        print(
            f"warning: serving on {host} without API_KEY: anyone who can reach it can use the model",
            file=sys.stderr,
        )
    engine = make_engine(cfg)
    app = create_app(engine, api_key=api_key)
    print(f"tuneboard API on http://{host}:{port}/v1 (model {engine.name})", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
    return 0
