"""The generations `tuneboard api` has in flight: admission (one generating, `max_waiting` queued, the rest
429), cancellation (a client that leaves, streaming or not, and shutdown, which cancels them all), and the
streaming thread with its server-sent events in OpenAI's chunk format.

Interface layer (api/), used by server.py; generation itself is the engine's (inference/), reading function
calls out of a reply too (inference/calls.py).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse

from ..inference.engine import Reply
from .protocol import ChatCompletionChunk, ChunkChoice, Delta, ToolCall, Usage

SHUTTING_DOWN = "the server is shutting down; retry shortly"


class Slots:
    """Requests admitted at once, each with its cancel event. `free`, `capacity` and `admitted` (a running
    count) are read by /health and by the load test; `cancel_all` is the shutdown."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.admitted = 0
        self.closing = False
        self._live: set[threading.Event] = set()
        self._lock = threading.RLock()  # re-entrant: cancel_all runs in a signal handler

    @property
    def free(self) -> int:
        return self.capacity - len(self._live)

    def try_acquire(self) -> threading.Event | None:
        """A slot as the request's cancel event; None when all are taken or the server is closing."""
        with self._lock:
            if self.closing or len(self._live) >= self.capacity:
                return None
            cancel = threading.Event()
            self._live.add(cancel)
            self.admitted += 1
            return cancel

    def release(self, cancel: threading.Event) -> None:
        with self._lock:
            if cancel not in self._live:
                raise RuntimeError("a request slot was released twice")
            self._live.remove(cancel)

    def cancel_all(self) -> None:
        """Shutdown: admit nobody more and cancel every generation in flight (each stops at its next token)."""
        with self._lock:
            self.closing = True
            for cancel in self._live:
                cancel.set()


async def cancel_on_disconnect(request: Request, cancels: list[threading.Event]) -> None:
    """A non-streaming client that leaves cancels its generations (one per choice). Its body is read by
    now, so the next message the server passes on is the disconnect."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
    for cancel in cancels:
        cancel.set()


class Stream:
    """One streaming generation: a thread (holding the request's slot until it ends) feeding an asyncio queue.
    Setting `cancel` (the slot's event) stops it at the next token."""

    DONE = object()

    def __init__(self, engine: Any, messages: list, gen: dict, slots: Slots, cancel: threading.Event) -> None:
        self.queue: asyncio.Queue = asyncio.Queue()
        self.cancel = cancel
        self.reply = Reply()
        self._args = (engine, messages, gen, slots, asyncio.get_running_loop())
        threading.Thread(target=self._produce, daemon=True).start()

    def _produce(self) -> None:
        engine, messages, gen, slots, loop = self._args
        put = lambda item: loop.call_soon_threadsafe(self.queue.put_nowait, item)  # noqa: E731
        try:
            if not self.cancel.is_set():
                for piece in engine.stream(messages, reply=self.reply, cancel=self.cancel, **gen):
                    put(piece)
                    if self.cancel.is_set():
                        break
        except Exception as exc:  # reported to the client as an error event
            put(exc)
        finally:
            slots.release(self.cancel)
            try:
                put(self.DONE)
            except RuntimeError:  # the server's loop is closed (shutdown)
                pass


class EventStream(StreamingResponse):
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


def error_event(message: str) -> str:
    return f"data: {json.dumps({'error': {'message': message, 'type': 'server_error'}})}\n\n"


async def events(
    stream: Stream, reader: Any, rid: str, created: int, model: str, slots: Slots, usage: bool = False
) -> AsyncIterator[str]:
    """The stream's server-sent events. `reader` (an inference.calls.CallReader) holds back text from the
    first call marker on; the calls are sent as `tool_calls` at the end. With `usage` (the request's
    stream_options.include_usage), a last chunk with no choices carries the token counts, as OpenAI sends it."""

    def chunk(delta: Delta | None, finish: str | None = None, counts: Usage | None = None) -> str:
        choices = [ChunkChoice(delta=delta, finish_reason=finish)] if delta is not None else []
        data = ChatCompletionChunk(id=rid, created=created, model=model, choices=choices, usage=counts)
        return f"data: {data.model_dump_json()}\n\n"

    try:
        yield chunk(Delta(role="assistant", content=""))
        while True:
            item = await stream.queue.get()
            if item is stream.DONE:
                break
            if isinstance(item, Exception):
                yield error_event(str(item))
                break
            content = reader.feed(item)
            if content:
                yield chunk(Delta(content=content))
        reply = stream.reply
        if reply.finish_reason == "cancelled" and slots.closing:
            yield error_event(SHUTTING_DOWN)
            yield "data: [DONE]\n\n"
            return
        rest, calls = reader.finish()
        if calls:
            yield chunk(Delta(tool_calls=[ToolCall(index=k, **call) for k, call in enumerate(calls)]))
        elif rest:  # no clean call after all: the held text is content
            yield chunk(Delta(content=rest))
        yield chunk(Delta(), "tool_calls" if calls else reply.finish_reason)
        if usage:
            yield chunk(None, counts=Usage.of(reply))
        yield "data: [DONE]\n\n"
    finally:
        stream.cancel.set()  # client gone or finished: stop generating, the thread releases the slot
