"""Tool definitions and function calls: read from a dataset's JSON text, written out as a template says.

Data layer, beside templates/. LLaMA-Factory data keeps `tools` as a JSON list of function definitions
and a function_call message as JSON `{"name": ..., "arguments": ...}` (or a list of them for parallel
calls); OpenAI data keeps an assistant message's `tool_calls`. Both shapes are read here.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any


def tojson(value: Any) -> str:
    """What transformers' `tojson` filter writes: non-ASCII kept, the default separators, keys in order."""
    return json.dumps(value, ensure_ascii=False)


def parse_tools(text: str) -> list[dict[str, Any]]:
    """A dataset's tools text -> definitions in the OpenAI form {"type": "function", "function": {...}}
    (a bare definition is wrapped, as LLaMA-Factory does). Raises ValueError when it is not one."""
    value = json.loads(text)
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise ValueError("it must be a JSON list of function definitions (objects)")
    return [
        t if t.get("type") == "function" and "function" in t else {"type": "function", "function": t}
        for t in value
    ]


@dataclass(frozen=True)
class Call:
    name: str
    arguments: Any  # a JSON object, or (OpenAI style) the object as a JSON string


def parse_calls(text: str) -> list[Call]:
    """A function_call message's text -> its calls. Raises ValueError when it is not one."""
    value = json.loads(text)
    calls = []
    for item in value if isinstance(value, list) else [value]:
        fn = item.get("function") if isinstance(item, dict) else None
        fn = fn if isinstance(fn, dict) else item  # OpenAI's {"type": "function", "function": {...}}
        name = fn.get("name") if isinstance(fn, dict) else None
        if not isinstance(name, str) or not name:
            raise ValueError('each call must be a JSON object with a "name" (and "arguments")')
        calls.append(Call(name, fn.get("arguments", {})))
    if not calls:
        raise ValueError("it holds no call")
    return calls


def call_json(call: Call) -> str:
    """One call as Qwen's templates write it: arguments given as a string are written as they are."""
    args = call.arguments if isinstance(call.arguments, str) else tojson(call.arguments)
    return '{"name": "' + call.name + '", "arguments": ' + args + "}"


def as_tool_calls(calls: list[Call]) -> list[dict[str, Any]]:
    """Calls as an OpenAI-style message's `tool_calls` (what official Jinja templates read)."""
    return [{"type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in calls]


def find_calls(text: str, markers: tuple[str, str]) -> tuple[str, list[Call]] | None:
    """A generated reply -> (the text before its calls, the calls), when it holds calls between the
    template's `markers` that all parse; None otherwise (then the whole reply is plain text)."""
    start, end = markers
    head, sep, rest = text.partition(start)
    if not sep:
        return None
    calls = []
    for block in (start + rest).split(start)[1:]:
        body, closed, after = block.partition(end)
        if not closed or after.strip():
            return None  # cut off (max tokens), or text after a call: not a clean call reply
        try:
            calls += parse_calls(body.strip())
        except ValueError:
            return None
    return head.strip(), calls


def openai_calls(calls: list[Call]) -> list[dict[str, Any]]:
    """Calls as an OpenAI API response's `tool_calls` (arguments as a JSON string, a fresh id each)."""
    return [
        {
            "id": f"call_{uuid.uuid4().hex[:24]}",
            "type": "function",
            "function": {
                "name": c.name,
                "arguments": c.arguments if isinstance(c.arguments, str) else tojson(c.arguments),
            },
        }
        for c in calls
    ]
