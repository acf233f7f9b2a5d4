"""The OpenAI chat-completions shapes that `tuneboard api` speaks: the request it accepts (unknown fields
tolerated, as OpenAI clients send many), the completion and stream chunks it answers with, and its errors.

Interface layer (api/), used by server.py and generations.py; no generation logic. A body that does not fit is
refused with one message naming the field, what it must be and what was wrong (`ChatRequest.parse`).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_serializer
from pydantic_core import PydanticCustomError


class ApiError(Exception):
    """An error answered in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = status, message, kind, param, code
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def _text_of_parts(value: Any) -> Any:
    """Content given as OpenAI's list of parts -> its text, the parts joined by newlines. Only text parts
    can be read: a model here takes no images or audio."""
    if not isinstance(value, list):
        return value
    texts = []
    for k, part in enumerate(value):
        kind = part.get("type") if isinstance(part, dict) else type(part).__name__
        if kind != "text" or not isinstance(part.get("text"), str):
            raise PydanticCustomError(
                "text_parts",
                "part {k} is {kind}: only text parts ('type': 'text' with a 'text' string) can be read",
                {"k": k, "kind": repr(kind)},
            )
        texts.append(part["text"])
    return "\n".join(texts)


def _listed(value: Any) -> Any:
    return [] if value is None else [value] if isinstance(value, str) else value


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")  # name, tool_call_id, ...

    role: str
    content: Annotated[str | None, BeforeValidator(_text_of_parts)] = None
    tool_calls: list[Any] | None = None  # checked with the conversation (inference.engine.to_conversation)


class Function(BaseModel):
    model_config = ConfigDict(extra="allow")  # description, parameters, strict

    name: str


class Tool(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["function"]
    function: Function


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = Field(False, strict=True)


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="allow")  # json_schema

    type: str


MAX_N = 8  # the most choices one request may ask for (each is a generation of its own)


def _count(what: str) -> Any:
    return Field(None, ge=1, strict=True, description=f"an integer >= 1 ({what})")


class ChatRequest(BaseModel):
    """POST /v1/chat/completions. Each field's description is what it must be, said when it is not."""

    model_config = ConfigDict(extra="allow")  # user, metadata, ...

    messages: list[Message] = Field(description="a list of messages, objects with 'role' and 'content'")
    model: str | None = Field(None, description="the id of the model served (GET /v1/models)")
    n: int = Field(1, ge=1, le=MAX_N, strict=True, description=f"an integer from 1 to {MAX_N} (choices)")
    seed: int | None = Field(
        None, ge=-(2**63), lt=2**63, strict=True, description="an integer (the sampling seed)"
    )
    stream_options: StreamOptions | None = Field(None, description='{"include_usage": true or false}')
    logprobs: bool | None = Field(None, strict=True, description="true or false")
    top_logprobs: int | None = Field(None, ge=0, le=20, strict=True, description="an integer from 0 to 20")
    response_format: ResponseFormat | None = Field(
        None, description='an object with a "type" ("text"; json_object and json_schema are not offered)'
    )
    max_tokens: int | None = _count("the longest reply in tokens")
    max_completion_tokens: int | None = _count("the longest reply in tokens; another name of max_tokens")
    temperature: float | None = Field(
        None, ge=0, strict=True, allow_inf_nan=False, description="a number >= 0 (0: greedy)"
    )
    top_p: float | None = Field(
        None, gt=0, le=1, strict=True, allow_inf_nan=False, description="a number in (0, 1]"
    )
    stop: Annotated[list[str], BeforeValidator(_listed)] = Field(
        default_factory=list, description="a string or a list of strings"
    )
    stream: bool = Field(False, strict=True, description="true or false")
    tools: list[Tool] | None = Field(
        None, description='a list of {"type": "function", "function": {"name": ...}} objects'
    )
    tool_choice: Literal["auto", "none"] | None = Field(
        None, description="'auto' or 'none' (the model decides whether to call; no call can be forced)"
    )

    @classmethod
    def parse(cls, raw: bytes) -> ChatRequest:
        """The request in a body, or ApiError(400) saying what is wrong. The JSON is read by pydantic's
        parser, which refuses nesting beyond a depth limit and lone surrogates (no RecursionError, no
        string that cannot be encoded)."""
        try:
            return cls.model_validate_json(raw)
        except ValidationError as err:
            first = err.errors(include_url=False, include_input=False, include_context=False)[0]
        loc, msg = first["loc"], first["msg"]
        if first["type"] == "json_invalid":
            raise ApiError(400, f"the request body is not valid JSON ({msg.removeprefix('Invalid JSON: ')})")
        if not loc:
            raise ApiError(400, f"the request body must be a JSON object ({msg})")
        name = str(loc[0])
        where = name + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[1:])
        rule = cls.model_fields[name].description
        raise ApiError(400, f"'{name}' must be {rule} ({where}: {msg})", param=where)

    def refuse_unsupported(self) -> None:
        """ApiError(400) for what a client may ask and this server does not do (rather than silently doing
        something else): log probabilities, JSON mode, several streamed choices."""
        if self.logprobs or self.top_logprobs:
            raise ApiError(400, "logprobs and top_logprobs are not offered by this server", param="logprobs")
        kind = self.response_format.type if self.response_format else "text"
        if kind != "text":
            raise ApiError(
                400,
                f"response_format {kind!r} is not offered: replies are plain text (ask for JSON in the prompt)",
                param="response_format",
            )
        if self.n > 1 and self.stream:
            raise ApiError(400, "n > 1 is answered without streaming only (stream: false)", param="n")

    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def prompt_messages(self) -> list[dict[str, Any]]:
        """The messages as plain dicts (text parts joined), for the engine."""
        return [{k: v for k, v in m.model_dump().items() if v is not None} for m in self.messages]

    def prompt_tools(self) -> list[dict[str, Any]] | None:
        """The tools the template writes into the prompt: none when tool_choice is 'none'."""
        if self.tool_choice == "none" or not self.tools:
            return None
        return [t.model_dump() for t in self.tools]

    def overrides(self) -> dict[str, Any]:
        """The generation settings asked for (None: the server's), in GenerationSettings' names."""
        longest = self.max_tokens if self.max_tokens is not None else self.max_completion_tokens
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_new_tokens": longest,
            "seed": self.seed,
        }


class _Compact(BaseModel):
    """Sent without its None fields (as OpenAI sends deltas), except those named in `keep_none`."""

    keep_none: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _drop_none(self, handler: Any) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None or k in self.keep_none}


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, reply: Any) -> Usage:
        total = reply.prompt_tokens + reply.completion_tokens
        return cls(
            prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens, total_tokens=total
        )


class FunctionCall(BaseModel):
    name: str
    arguments: str  # a JSON object, as text


class ToolCall(_Compact):
    index: int | None = None  # in stream chunks only
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class AssistantMessage(_Compact):
    keep_none: ClassVar[tuple[str, ...]] = ("content",)  # null beside tool_calls, as OpenAI writes it

    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCall] | None = None


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: str
    logprobs: None = None  # as OpenAI writes it when none were asked for


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


class Delta(_Compact):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCall] | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: str | None = None


class ChatCompletionChunk(_Compact):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None  # in the last chunk


def completion(rid: str, created: int, model: str, replies: list[tuple[Any, Any]]) -> ChatCompletion:
    """The answer to a non-streaming request: for each (reply, (content, calls)), a choice with the reply's
    content or its function calls; the usage counts the prompt once and every choice's tokens."""
    choices = []
    for k, (reply, (content, calls)) in enumerate(replies):
        tool_calls = [ToolCall(**c) for c in calls] if calls else None
        message = AssistantMessage(content=content, tool_calls=tool_calls)
        choices.append(
            Choice(index=k, message=message, finish_reason="tool_calls" if calls else reply.finish_reason)
        )
    prompt = replies[0][0].prompt_tokens
    done = sum(reply.completion_tokens for reply, _ in replies)
    usage = Usage(prompt_tokens=prompt, completion_tokens=done, total_tokens=prompt + done)
    return ChatCompletion(id=rid, created=created, model=model, choices=choices, usage=usage)
