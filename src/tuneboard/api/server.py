"""`tuneboard api`: an OpenAI-compatible server over ChatEngine (models, chat completions, streaming).

Interface layer: no generation logic here. One model, generation serialised by the engine; at most
`max_waiting` requests queue behind it, the rest get 429 with Retry-After; a client that disconnects
mid-stream cancels its generation and frees the slot.
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
from ..errors import TuneboardError

DEFAULT_PORT = 8000


def _error(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> Any:
    body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return JSONResponse(body, status_code=status, headers=headers)


def create_app(engine: Any, api_key: str | None = None, max_waiting: int = 16) -> Any:
    app = FastAPI(title="tuneboard API", docs_url=None, redoc_url=None)
    slots = threading.BoundedSemaphore(max_waiting + 1)  # one generating + max_waiting queued
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
        return {"status": "ok", "model": model_id}

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
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error(400, "'messages' must be a list", "invalid_request_error")
        stop = body.get("stop")
        stop = [stop] if isinstance(stop, str) else (stop or [])
        gen = {
            "temperature": body.get("temperature"),
            "top_p": body.get("top_p"),
            "max_new_tokens": body.get("max_tokens") or body.get("max_completion_tokens"),
        }
        if gen["temperature"] is not None:
            gen["do_sample"] = gen["temperature"] > 0
        try:
            engine.encode(body["messages"])  # validate before taking a slot
        except TuneboardError as exc:
            return _error(400, str(exc), "invalid_request_error")
        if not slots.acquire(blocking=False):
            return _error(429, "the server is busy; retry shortly", "rate_limit_error", {"Retry-After": "1"})
        rid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        if body.get("stream"):
            return StreamingResponse(
                _sse(engine, body["messages"], stop, gen, slots, rid, created, model_id, request),
                media_type="text/event-stream",
            )
        try:
            reply = await asyncio.to_thread(engine.chat, body["messages"], stop=stop, **gen)
        finally:
            slots.release()
        return {
            "id": rid,
            "object": "chat.completion",
            "created": created,
            "model": model_id,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.text},
                    "finish_reason": reply.finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": reply.prompt_tokens,
                "completion_tokens": reply.completion_tokens,
                "total_tokens": reply.prompt_tokens + reply.completion_tokens,
            },
        }

    return app


async def _sse(engine, messages, stop, gen, slots, rid, created, model_id, request):
    """Server-sent events in OpenAI's chunk format; generation runs in a thread, cancelled on disconnect."""
    from ..chat import Reply

    queue: asyncio.Queue = asyncio.Queue()
    loop = asyncio.get_running_loop()
    cancel = threading.Event()
    reply = Reply()
    done = object()

    def produce() -> None:
        try:
            for piece in engine.stream(messages, stop=stop, reply=reply, cancel=cancel, **gen):
                loop.call_soon_threadsafe(queue.put_nowait, piece)
                if cancel.is_set():
                    break
        except Exception as exc:  # reported to the client as an error chunk
            loop.call_soon_threadsafe(queue.put_nowait, exc)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, done)
            slots.release()

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

    worker = threading.Thread(target=produce, daemon=True)
    worker.start()
    try:
        yield chunk({"role": "assistant", "content": ""})
        while True:
            item = await queue.get()
            if item is done:
                break
            if isinstance(item, Exception):
                err = {"error": {"message": str(item), "type": "server_error"}}
                yield f"data: {json.dumps(err)}\n\n"
                break
            yield chunk({"content": item})
        usage = {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        }
        yield chunk({}, reply.finish_reason, usage)
        yield "data: [DONE]\n\n"
    finally:
        cancel.set()  # client gone or finished: stop generating, the thread releases the slot


def run(cfg: Config, host: str | None = None, port: int | None = None) -> int:
    import uvicorn

    from ..chat import ChatEngine

    host = host or os.environ.get("API_HOST", "127.0.0.1")
    port = int(port or os.environ.get("API_PORT", DEFAULT_PORT))
    api_key = os.environ.get("API_KEY") or None
    if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        print(
            f"warning: serving on {host} without API_KEY: anyone who can reach it can use the model",
            file=sys.stderr,
        )
    engine = ChatEngine(cfg)
    app = create_app(engine, api_key=api_key)
    print(f"tuneboard API on http://{host}:{port}/v1 (model {engine.name})", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
    return 0
