"""The engine contract behind `tuneboard chat`, `webchat` and `api`: OpenAI-style messages in, text pieces out.

Inference layer; imports no backend (hf.py and vllm.py implement `stream`). Also the stop-string rules that
every backend applies the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..data.formats import ASSISTANT, FUNCTION, OBSERVATION, USER, Conversation, Message
from ..data.templates.named import tool_templates
from ..data.toolcalls import parse_calls, tojson
from ..errors import TuneboardError


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


class Engine:
    """What ChatEngine and vllm_engine.VllmEngine share: the prompt encoding and the blocking chat call
    (both subclasses define `stream`)."""

    template: Any
    tokenizer: Any

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

    def chat(self, messages: list[dict[str, Any]], system: str | None = None, **gen: Any) -> Reply:
        reply = Reply()
        for _ in self.stream(messages, system=system, reply=reply, **gen):
            pass
        return reply


def releasable(text: str, stop: list[str] | None, final: bool = False) -> tuple[str, int, bool]:
    """(text cut at the first stop string, how much of it may be shown now, whether a stop string was hit).
    Until the text is final, a tail that could still grow into a stop string is held back."""
    cut = first_stop(text, stop)
    if cut is not None:
        return text[:cut], cut, True
    return text, len(text) if final else len(text) - partial_stop(text, stop), False


def first_stop(text: str, stop: list[str] | None) -> int | None:
    hits = [text.find(s) for s in stop or () if s and s in text]
    return min(hits) if hits else None


def partial_stop(text: str, stop: list[str] | None) -> int:
    """Length of the longest text suffix that is a proper prefix of a stop string."""
    best = 0
    for s in stop or ():
        for k in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:k]):
                best = max(best, k)
                break
    return best
