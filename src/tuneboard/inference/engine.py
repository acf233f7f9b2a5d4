"""The engine contract behind `tuneboard chat`, `webchat`, `api` and `eval`: OpenAI-style messages in, text
pieces out; for evaluation, many prompts' ids in, their replies out.

Inference layer; imports no backend (hf.py and vllm.py implement `stream` and `complete`). Also what every
backend does the same way: the prompt and its settings (`prepare`: request checked, reply capped to the
context) and reading function calls out of a reply (calls.py); stops.py holds the stop-string rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import Config
from ..data.formats import ASSISTANT, FUNCTION, OBSERVATION, USER, Conversation, Message
from ..data.templates.named import tool_templates
from ..data.toolcalls import parse_calls, tojson
from ..errors import TuneboardError
from .generation import GenerationSettings

_NO_LIMIT = 10**8  # tokenizers without a length limit report ~1e30 (transformers' VERY_LARGE_INTEGER)


class ContextLengthError(TuneboardError):
    """A prompt the model's context cannot hold with room for a reply."""


@dataclass
class Reply:
    text: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"  # "stop" | "length" | "cancelled"


def to_conversation(
    messages: list[dict[str, Any]],
    system: str | None = None,
    tools: list | None = None,
    results_join: str = "",
) -> Conversation:
    """OpenAI-style messages -> Conversation ending with a prompt (user or tool message). An assistant
    message's `tool_calls` become a function call; consecutive tool messages (the results of parallel calls)
    are joined with `results_join`, the template's way of writing several results in one message."""
    roles = {"user": USER, "assistant": ASSISTANT, "tool": OBSERVATION, "observation": OBSERVATION}
    conv = Conversation(messages=[], system=system or "", tools=tojson(tools) if tools else "")
    for i, m in enumerate(messages):
        role, content = m.get("role"), m.get("content")
        if role == "assistant" and m.get("tool_calls"):
            try:
                content = tojson(m["tool_calls"])
                parse_calls(content)
            except (TypeError, ValueError) as err:
                raise TuneboardError(f"messages[{i}].tool_calls: {err}") from None
            conv.messages.append(Message(FUNCTION, content))
            continue
        if not isinstance(content, str):
            raise TuneboardError(f"messages[{i}].content must be a string")
        if role == "system":
            if conv.messages:
                raise TuneboardError(f"messages[{i}]: a system message may only come first")
            conv.system = content
            continue
        if role not in roles:
            raise TuneboardError(f"messages[{i}].role {role!r} is not one of system, user, assistant, tool")
        last = conv.messages[-1] if conv.messages else None
        if roles[role] == OBSERVATION and last is not None and last.role == OBSERVATION:
            if not results_join:
                raise TuneboardError(
                    f"messages[{i}]: this template cannot take several tool results in a row; send them as one"
                )
            last.content += results_join + content
            continue
        conv.messages.append(Message(roles[role], content))
    if not conv.messages or conv.messages[-1].role not in (USER, OBSERVATION):
        raise TuneboardError("the last message must be from the user")
    for k, m in enumerate(conv.messages):
        if (m.role in (USER, OBSERVATION)) != (k % 2 == 0):
            raise TuneboardError("messages must alternate between user and assistant")
    return conv


def context_window(*limits: Any) -> int | None:
    """The model's context in tokens: the smallest of the limits it states (a tokenizer's model_max_length,
    a config's max_position_embeddings, vLLM's max_model_len); None when none is stated."""
    real = [int(n) for n in limits if isinstance(n, (int, float)) and 0 < n < _NO_LIMIT]
    return min(real) if real else None


class Engine:
    """What ChatEngine and vllm.VllmEngine share: the prompt and its settings, the blocking chat call, and
    the reading of function calls (both subclasses define `stream`)."""

    template: Any
    tokenizer: Any
    cfg: Config = Config()  # the backends load their own; a bare engine generates with the defaults
    context_length: int | None = None  # prompt + reply, in tokens; None: no stated limit

    def prepare(
        self,
        messages: list[dict[str, Any]],
        system: str | None = None,
        tools: list | None = None,
        settings: GenerationSettings | None = None,
        **request: Any,
    ) -> tuple[list[int], GenerationSettings]:
        """The prompt ids and the settings of one reply: the request's overrides checked (or `settings` as
        given), the reply capped to what the context leaves after the prompt. TuneboardError for a bad
        request; ContextLengthError for a prompt that leaves no room."""
        settings = settings or GenerationSettings.from_config(self.cfg, **request)
        ids = self.encode(messages, system, tools)
        if self.context_length is not None:
            if len(ids) >= self.context_length:
                raise ContextLengthError(
                    f"the prompt is {len(ids)} tokens and the model's context is {self.context_length} tokens "
                    "(prompt and reply together): shorten the messages"
                )
            settings = settings.capped(self.context_length - len(ids))
        return ids, settings

    def call_reader(self, tools: list | None) -> Any:
        """A calls.CallReader for one reply: function calls read out in the template's markers when the
        request offered tools; plain text otherwise."""
        from .calls import CallReader

        return CallReader(getattr(self.template, "call_markers", None) if tools else None)

    def encode(
        self, messages: list[dict[str, Any]], system: str | None = None, tools: list | None = None
    ) -> list[int]:
        if tools and not self.template.renders_tools:
            raise TuneboardError(
                f"tools: template {self.template.name} does not write tool definitions into the prompt "
                f"(templates {', '.join(tool_templates())} do, and auto when the model's own template has tools)"
            )
        conv = to_conversation(messages, system, tools, getattr(self.template, "results_join", ""))
        text = self.template.prompt_text(conv)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def complete(self, prompts: list[list[int]], settings: GenerationSettings) -> list[Reply]:
        """Replies to many prompts given as token ids (evaluation, prediction), in their order: all handed to
        the backend at once, so it batches them as it would concurrent requests. Each backend defines it."""
        raise NotImplementedError

    def close(self) -> None:
        """Let go of what the engine runs on beside the model (the transformers engine's batch thread)."""

    def chat(self, messages: list[dict[str, Any]], system: str | None = None, **gen: Any) -> Reply:
        reply = Reply()
        for _ in self.stream(messages, system=system, reply=reply, **gen):
            pass
        return reply
