"""`tuneboard api`: an OpenAI-compatible server over the chat engine (models, chat completions, streaming).

Interface layer: routes only. The request and reply shapes are protocol.py's, the checks at the door
guards.py's, admission, cancellation and streaming generations.py's; the prompt, its settings and the
reading of function calls are the engine's (inference/). One model; `max_concurrent` requests generate
together (the engine batches them), at most `max_waiting` more queue, the rest get 429 with Retry-After. A client that leaves
(mid-stream, while it waits, or before a non-streaming reply) cancels its generation and frees its slot;
SIGTERM cancels every generation, so the server stops within seconds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
import sys
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ..config import Config, split_names
from ..errors import TuneboardError
from ..inference.engine import ContextLengthError
from .generations import SHUTTING_DOWN, EventStream, Slots, Stream, cancel_on_disconnect, events
from .guards import LOOPBACK, MAX_BODY_BYTES, HostCheck, JsonBody, KeyCheck
from .protocol import ApiError, ChatRequest, completion

DEFAULT_PORT = 8000
SHUTDOWN_GRACE_S = 5  # after SIGTERM, requests still running after this long are cut off


def create_app(
    engine: Any,
    api_key: str | None = None,
    max_waiting: int = Config.max_waiting,
    max_concurrent: int | None = None,
    *,
    bound_host: str = "127.0.0.1",
    allowed_hosts: Iterable[str] = (),
    max_body_bytes: int = MAX_BODY_BYTES,
) -> Any:
    """The app over `engine`. It admits `max_concurrent` generations at once (default: the engine's batch
    size) and `max_waiting` more in a queue; beyond them, 429. It answers Host headers naming `bound_host`,
    localhost and `allowed_hosts`."""
    app = FastAPI(
        title="tuneboard API",
        docs_url=None,
        redoc_url=None,
        dependencies=[Depends(HostCheck(bound_host, allowed_hosts))],
    )
    if max_concurrent is None:
        max_concurrent = getattr(engine, "max_batch", 1)
    slots = Slots(max_concurrent + max_waiting)
    app.state.slots = slots
    # a thread for every admitted non-streaming generation (asyncio's default pool has cpu_count + 4: on a
    # small machine it would hold the rest back from the engine's batch); streams have their own thread
    generating = ThreadPoolExecutor(slots.capacity, thread_name_prefix="tuneboard-chat")
    model_id = os.path.basename(str(engine.name).rstrip("/")) or str(engine.name)
    names = {model_id, str(engine.name)}  # what a request's `model` may say
    keyed = [Depends(KeyCheck(api_key))]
    read_body = JsonBody(max_body_bytes)

    async def chat_request(raw: bytes = Depends(read_body)) -> ChatRequest:
        return ChatRequest.parse(raw)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        return ApiError(exc.status_code, str(exc.detail), kind, headers=exc.headers).response()

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return ApiError(400, f"invalid request: {exc.errors()[:1]}").response()

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception) -> JSONResponse:
        return ApiError(500, f"the server failed: {type(exc).__name__}", "server_error").response()

    @app.get("/health")
    async def health():
        load = engine.load() if hasattr(engine, "load") else {}
        return {
            "status": "ok",
            "model": model_id,
            "slots_free": slots.free,
            "slots": slots.capacity,
            "max_concurrent": max_concurrent,
            "max_waiting": max_waiting,
            "admitted": slots.capacity - slots.free,  # generating or queued
            **load,  # the engine's own: "batch" (generating now), "waiting" (queued for the batch)
        }

    @app.get("/v1/models", dependencies=keyed)
    async def models():
        return {
            "object": "list",
            "data": [{"id": model_id, "object": "model", "created": 0, "owned_by": "tuneboard"}],
        }

    @app.post("/v1/chat/completions", dependencies=keyed)
    async def completions(request: Request, req: ChatRequest = Depends(chat_request)):
        if req.model is not None and req.model not in names:
            raise ApiError(
                404,
                f"the model {req.model!r} is not served here; this server serves {model_id!r}",
                param="model",
                code="model_not_found",
            )
        req.refuse_unsupported()
        messages, tools = req.prompt_messages(), req.prompt_tools()
        try:  # the prompt is checked (and encoded) off the event loop, before a slot is taken
            _, settings = await asyncio.to_thread(engine.prepare, messages, tools=tools, **req.overrides())
        except ContextLengthError as exc:
            raise ApiError(400, str(exc), param="messages", code="context_length_exceeded") from None
        except TuneboardError as exc:
            raise ApiError(400, str(exc)) from None
        cancels = [slots.try_acquire() for _ in range(req.n)]  # one slot per choice: each is a generation
        if None in cancels:
            for cancel in cancels:
                if cancel is not None:
                    slots.release(cancel)
            if slots.closing:
                raise ApiError(503, SHUTTING_DOWN, "server_error", headers={"Retry-After": "5"})
            raise ApiError(
                429, "the server is busy; retry shortly", "rate_limit_error", headers={"Retry-After": "1"}
            )
        rid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        gen = {"stop": req.stop, "tools": tools, "settings": settings}
        if req.stream:
            # the generation thread starts now and owns the slot: it is released however the response ends,
            # even when the client leaves before the first byte is sent
            stream = Stream(engine, messages, gen, slots, cancels[0])
            reader = engine.call_reader(tools)
            body = events(stream, reader, rid, created, model_id, slots, req.include_usage())
            return EventStream(body, cancels[0])

        def choice(k: int, cancel: Any) -> Any:
            seeded = (
                settings if settings.seed is None else dataclasses.replace(settings, seed=settings.seed + k)
            )
            call = functools.partial(engine.chat, messages, cancel=cancel, **(gen | {"settings": seeded}))
            return asyncio.get_running_loop().run_in_executor(generating, call)

        watcher = asyncio.create_task(cancel_on_disconnect(request, cancels))
        try:
            replies = await asyncio.gather(*(choice(k, c) for k, c in enumerate(cancels)))
        except TuneboardError as exc:
            raise ApiError(500, str(exc), "server_error") from None
        finally:
            watcher.cancel()
            for cancel in cancels:
                cancel.set()  # also when this task is cancelled: the generation threads stop
                slots.release(cancel)
        if any(r.finish_reason == "cancelled" for r in replies) and slots.closing:
            raise ApiError(503, SHUTTING_DOWN, "server_error", headers={"Retry-After": "5"})
        read = [(r, engine.call_reader(tools).read(r.text)) for r in replies]
        return JSONResponse(completion(rid, created, model_id, read).model_dump())

    return app


def serve(app: Any, host: str, port: int) -> None:
    """Run `app` with uvicorn until SIGINT / SIGTERM, which first cancel every generation in flight."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            app.state.slots.cancel_all()
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=SHUTDOWN_GRACE_S
    )
    Server(config).run()


def run(cfg: Config, host: str | None = None, port: int | None = None) -> int:
    from ..inference import make_engine

    host = host or os.environ.get("API_HOST", "127.0.0.1")
    port = int(port or os.environ.get("API_PORT", DEFAULT_PORT))
    api_key = os.environ.get("API_KEY") or None
    if host.strip("[]") not in LOOPBACK and not api_key:
        print(
            f"warning: serving on {host} without API_KEY: anyone who can reach it can use the model",
            file=sys.stderr,
        )
    engine = make_engine(cfg)
    app = create_app(
        engine,
        api_key=api_key,
        max_waiting=cfg.max_waiting,
        max_concurrent=cfg.max_concurrent,
        bound_host=host,
        allowed_hosts=split_names(cfg.api_allowed_hosts),
    )
    print(f"tuneboard API on http://{host}:{port}/v1 (model {engine.name})", flush=True)
    serve(app, host, port)
    return 0
