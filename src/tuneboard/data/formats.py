"""Alpaca / ShareGPT / OpenAI records -> one `Conversation` (system, tools, alternating turns).

Data layer, step 3 of the flow (registry -> read -> *to Conversation* -> template -> tokens).
Rule: a non-empty standard field present in a record reaches the conversation, columns map or not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..errors import DataError
from .toolcalls import parse_calls, parse_tools

USER, ASSISTANT, OBSERVATION, FUNCTION = "user", "assistant", "observation", "function"
PROMPT_ROLES = (USER, OBSERVATION)
REPLY_ROLES = (ASSISTANT, FUNCTION)

ALPACA_COLUMNS = {
    "prompt": "instruction",
    "query": "input",
    "response": "output",
    "history": "history",
    "system": "system",
    "tools": "tools",
}
SHAREGPT_COLUMNS = {"messages": "conversations", "system": "system", "tools": "tools"}
OPENAI_COLUMNS = {"messages": "messages", "system": "system", "tools": "tools"}
SHAREGPT_TAGS = {
    "role_tag": "from",
    "content_tag": "value",
    "user_tag": "human",
    "assistant_tag": "gpt",
    "observation_tag": "observation",
    "function_tag": "function_call",
    "system_tag": "system",
}
OPENAI_TAGS = {
    "role_tag": "role",
    "content_tag": "content",
    "user_tag": "user",
    "assistant_tag": "assistant",
    "observation_tag": "tool",
    "function_tag": "function",
    "system_tag": "system",
}
FORMATTINGS = ("alpaca", "sharegpt", "openai")
MAX_RECORD_CHARS = 32 * 2**20  # a record with more text than this is refused: no cutoff_len makes use of it


@dataclass
class Message:
    role: str
    content: str


@dataclass
class Conversation:
    """What every format becomes: an optional system prompt and tools, then prompt/reply pairs."""

    messages: list[Message]
    system: str = ""
    tools: str = ""
    source: str = field(default="", compare=False)
    rejected: Message | None = (
        None  # ranking data: the rejected final reply (`messages` ends with the chosen)
    )
    kto_tag: bool | None = None  # KTO data: the final reply is desirable (True) or undesirable (False)

    @property
    def turns(self) -> list[tuple[Message, Message]]:
        return [(self.messages[i], self.messages[i + 1]) for i in range(0, len(self.messages) - 1, 2)]


def default_columns(formatting: str) -> dict[str, str]:
    return dict(
        {"alpaca": ALPACA_COLUMNS, "sharegpt": SHAREGPT_COLUMNS, "openai": OPENAI_COLUMNS}[formatting]
    )


def default_tags(formatting: str) -> dict[str, str]:
    return dict(OPENAI_TAGS if formatting == "openai" else SHAREGPT_TAGS)


def effective_columns(formatting: str, columns: dict[str, str] | None) -> dict[str, str]:
    """The entry's columns on top of the standard names, so unmapped standard fields are still read."""
    merged = default_columns(formatting)
    merged.update(columns or {})
    return merged


def _text(record: dict[str, Any], key: str | None, where: str, required: bool = False) -> str:
    if not key or key not in record or record[key] is None:
        if required:
            raise DataError(f"{where}: missing required field '{key}'")
        return ""
    value = record[key]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise DataError(f"{where}: field '{key}' must be a string, got {type(value).__name__}")
    return value


def _tools(record: dict[str, Any], key: str | None, where: str) -> str:
    value = record.get(key) if key else None
    if value is None or value == "":
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    if not isinstance(value, str):
        raise DataError(f"{where}: field '{key}' must be a JSON string or list, got {type(value).__name__}")
    return value


def from_alpaca(
    record: dict[str, Any], columns: dict[str, str], where: str, ranking: bool = False
) -> Conversation:
    if ranking:  # LLaMA-Factory's alpaca preference entries: `chosen` and `rejected` replace `response`
        chosen = _text(record, columns.get("chosen", "chosen"), where, required=True)
        rejected = _text(record, columns.get("rejected", "rejected"), where, required=True)
        conv = from_alpaca({**record, "\0chosen": chosen}, {**columns, "response": "\0chosen"}, where)
        conv.rejected = Message(ASSISTANT, rejected)
        return conv
    prompt = _text(record, columns.get("prompt"), where)
    query = _text(record, columns.get("query"), where)
    response_key = columns.get("response")
    if not response_key:  # pre-training text (sniff.sniff_formatting): one document, no reply
        text = "\n".join(part for part in (prompt, query) if part)  # as LLaMA-Factory joins them
        if not text.strip():
            raise DataError(f"{where}: field '{columns.get('prompt')}' (the text) is missing or empty")
        return Conversation([Message(USER, text)], source=where)
    response = _text(record, response_key, where, required=True)
    user = "\n".join(part for part in (prompt, query) if part)
    if not user:
        raise DataError(
            f"{where}: field '{columns.get('prompt')}' and '{columns.get('query')}' are both empty"
        )
    messages: list[Message] = []
    history_key = columns.get("history")
    history = record.get(history_key) if history_key else None
    if history:
        if not isinstance(history, list):
            raise DataError(f"{where}: field '{history_key}' must be a list of [user, assistant] pairs")
        for k, pair in enumerate(history):
            ok = isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(p, str) for p in pair)
            if not ok:
                raise DataError(
                    f"{where}: field '{history_key}[{k}]' must be a pair of strings [user, assistant]"
                )
            messages += [Message(USER, pair[0]), Message(ASSISTANT, pair[1])]
    messages += [Message(USER, user), Message(ASSISTANT, response)]
    return Conversation(
        messages=messages,
        system=_text(record, columns.get("system"), where),
        tools=_tools(record, columns.get("tools"), where),
        source=where,
    )


def _ranked_reply(
    record: dict[str, Any], columns: dict[str, str], tags: dict[str, str], name: str, where: str
):
    """A sharegpt preference entry's `chosen` / `rejected` field: one message object (role and content tags)."""
    key = columns.get(name, name)
    msg = record.get(key)
    role_tag, content_tag = tags["role_tag"], tags["content_tag"]
    if not isinstance(msg, dict) or not isinstance(msg.get(content_tag), str):
        raise DataError(
            f"{where}: field '{key}' must be a message object with '{role_tag}' and '{content_tag}'"
        )
    if msg.get(role_tag) not in (tags["assistant_tag"], tags["function_tag"]):
        raise DataError(
            f"{where}: field '{key}.{role_tag}' is {msg.get(role_tag)!r}; expected a reply role "
            f"({tags['assistant_tag']!r} or {tags['function_tag']!r})"
        )
    return {role_tag: msg[role_tag], content_tag: msg[content_tag]}


def from_sharegpt(
    record: dict[str, Any], columns: dict[str, str], tags: dict[str, str], where: str, ranking: bool = False
) -> Conversation:
    key = columns.get("messages", "conversations")
    if ranking:  # the messages end with the prompt; `chosen` and `rejected` are its two replies
        chosen = _ranked_reply(record, columns, tags, "chosen", where)
        rejected = _ranked_reply(record, columns, tags, "rejected", where)
        raw = record.get(key)
        if not isinstance(raw, list):
            raise DataError(f"{where}: field '{key}' must be a list of messages ending with the prompt")
        conv = from_sharegpt({**record, key: [*raw, chosen]}, columns, tags, where)
        last = from_sharegpt({**record, key: [*raw, rejected]}, columns, tags, where).messages[-1]
        conv.rejected = last
        return conv
    raw = record.get(key)
    if raw is None:
        raise DataError(f"{where}: missing required field '{key}'")
    if not isinstance(raw, list) or not raw:
        raise DataError(f"{where}: field '{key}' must be a non-empty list of messages")
    role_tag, content_tag = tags["role_tag"], tags["content_tag"]
    roles = {
        tags["user_tag"]: USER,
        tags["assistant_tag"]: ASSISTANT,
        tags["observation_tag"]: OBSERVATION,
        tags["function_tag"]: FUNCTION,
    }
    system = _text(record, columns.get("system"), where)
    messages: list[Message] = []
    for k, msg in enumerate(raw):
        at = f"{where}: field '{key}[{k}]'"
        if not isinstance(msg, dict):
            raise DataError(f"{at} must be an object with '{role_tag}' and '{content_tag}'")
        role = msg.get(role_tag)
        content = msg.get(content_tag)
        if not content and role in roles and msg.get("tool_calls"):  # OpenAI: content null or ""
            content = json.dumps(msg["tool_calls"], ensure_ascii=False)
            role = tags["function_tag"]  # a reply made of calls is a function call
        if not isinstance(content, str):
            raise DataError(f"{at}.{content_tag} must be a string, got {type(content).__name__}")
        if role == tags["system_tag"] and k == 0:
            system = content if not system else f"{system}\n{content}"
            continue
        if role not in roles:
            known = ", ".join(repr(r) for r in (*roles, tags["system_tag"]))
            raise DataError(f"{at}.{role_tag} is {role!r}; expected one of {known} (system only first)")
        messages.append(Message(roles[role], content))
    for k, msg in enumerate(messages):
        expected = PROMPT_ROLES if k % 2 == 0 else REPLY_ROLES
        if msg.role not in expected:
            want = "user/observation" if k % 2 == 0 else "assistant/function"
            raise DataError(
                f"{where}: field '{key}': message {k} is {msg.role}, expected {want} (roles must alternate)"
            )
    if len(messages) % 2:
        raise DataError(
            f"{where}: field '{key}' ends with a {messages[-1].role} message; it must end with a reply"
        )
    return Conversation(
        messages, system=system, tools=_tools(record, columns.get("tools"), where), source=where
    )


def to_conversation(
    record: Any,
    formatting: str,
    columns: dict[str, str],
    tags: dict[str, str],
    where: str,
    ranking: bool = False,
) -> Conversation:
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected an object, got {type(record).__name__}")
    if formatting == "alpaca":
        conv = from_alpaca(record, columns, where, ranking)
    else:
        conv = from_sharegpt(record, columns, tags, where, ranking)
    conv.kto_tag = _kto_tag(record, columns, where)
    size = len(conv.system) + len(conv.tools) + sum(len(m.content) for m in conv.messages)
    if size > MAX_RECORD_CHARS:
        raise DataError(
            f"{where}: {size:,} characters of text, more than the {MAX_RECORD_CHARS:,} a record may hold "
            "(training keeps cutoff_len tokens of it); split it or leave it out"
        )
    _check_unicode(conv, where)
    _check_tools(conv, where)
    return conv


def _kto_tag(record: dict[str, Any], columns: dict[str, str], where: str) -> bool | None:
    """The record's `kto_tag` column when the entry maps one: true (a desirable reply) or false. LLaMA-Factory
    trains a record whose tag is not a boolean as a plain reply; here it is refused."""
    key = columns.get("kto_tag")
    if not key:
        return None
    value = record.get(key)
    if not isinstance(value, bool):
        got = "nothing (the field is missing)" if key not in record else repr(value)
        raise DataError(
            f"{where}: field '{key}' (kto_tag) must be true (a desirable reply) or false (undesirable), got {got}"
        )
    return value


def _check_tools(conv: Conversation, where: str) -> None:
    """Tool definitions and function calls must parse: templates that write them need their parts."""
    if conv.tools:
        try:
            parse_tools(conv.tools)
        except ValueError as err:
            raise DataError(f"{where}: field 'tools' is not a list of function definitions: {err}") from None
    for k, msg in enumerate(conv.messages):
        if msg.role == FUNCTION:
            try:
                parse_calls(msg.content)
            except ValueError as err:
                raise DataError(f"{where}: message {k} (function call) is not a JSON call: {err}") from None


def _check_unicode(conv: Conversation, where: str) -> None:
    """An unpaired "\\ud800"-style escape in a JSON file becomes a lone surrogate, which no tokenizer can
    encode: name it here, by record and place, rather than deep inside tokenization."""
    for k, text in enumerate([conv.system, conv.tools, *(m.content for m in conv.messages)]):
        try:
            text.encode("utf-8")  # C speed; a search for the surrogate range costs ten times more
        except UnicodeEncodeError as err:
            name = ("system", "tools")[k] if k < 2 else f"message {k - 2} ({conv.messages[k - 2].role})"
            raise DataError(
                f"{where}: {name} holds a lone surrogate {ascii(text[err.start])} at character {err.start}, "
                "which is not valid Unicode text (an unpaired \\uD800-\\uDFFF escape in the file?)"
            ) from None


def mapped_fields(formatting: str, columns: dict[str, str], tags: dict[str, str]) -> set[str]:
    """Record fields that reach the conversation; `data check` reports every other non-empty field."""
    return {v for v in columns.values() if v}
