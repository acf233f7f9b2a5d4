"""Jinja chat templates: "auto" (render with the tokenizer's own template) and `to_jinja` (export a named one).

Data layer, step 4 of the flow, beside named.py. Rendering goes through transformers' own Jinja
environment, so the text equals `tokenizer.apply_chat_template(...)`.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from ...errors import ConfigError, DataError
from ..formats import ASSISTANT, FUNCTION, OBSERVATION, PROMPT_ROLES, REPLY_ROLES, USER, Conversation
from ..toolcalls import as_tool_calls, parse_calls, parse_tools
from .base import Qwen3Template, Segment, Template
from .named import IM_HEADER

_ROLE = {USER: "user", ASSISTANT: "assistant", OBSERVATION: "tool"}


def to_messages(conv: Conversation) -> list[dict[str, Any]]:
    """OpenAI-style messages: the system first (when set), observations as 'tool', function calls as an
    assistant message's `tool_calls` (what official templates read)."""
    out: list[dict[str, Any]] = [{"role": "system", "content": conv.system}] if conv.system else []
    for m in conv.messages:
        if m.role == FUNCTION:
            out.append(
                {"role": "assistant", "content": "", "tool_calls": as_tool_calls(parse_calls(m.content))}
            )
        else:
            out.append({"role": _ROLE[m.role], "content": m.content})
    return out


def tools_of(conv: Conversation) -> list[dict[str, Any]] | None:
    """The `tools` a chat template is given: None when the conversation has none (templates test `if tools`)."""
    return parse_tools(conv.tools) if conv.tools else None


class JinjaTemplate:
    """Template 'auto': a tokenizer's `chat_template`; trained spans found by rendering message prefixes.

    For each reply i the text of messages[:i] with the generation prompt must be a prefix of the text of
    messages[:i+1], which must be a prefix of everything after it; the difference is the reply. Its trailing
    whitespace after the end-of-turn text is the (untrained) separator. A template without any end-of-turn
    text gets the eos appended as trained text when rendering for training.
    """

    name = "auto"
    default_system = ""

    def __init__(self, chat_template: str, bos: str | None = None, eos: str | None = None, **kwargs: Any):
        self.chat_template = chat_template
        self.bos, self.eos = bos, eos
        self.kwargs = kwargs  # extra template variables, e.g. enable_thinking
        self.renders_tools = re.search(r"\btools\b", chat_template) is not None
        # Qwen's and Hermes-style templates write calls between these tags; others are not read for calls
        self.call_markers = ("<tool_call>", "</tool_call>") if "<tool_call>" in chat_template else None
        probe = self._reply_parts([{"role": "user", "content": "x"}], {"role": "assistant", "content": "y"})
        self.eot = probe[1] if probe else ""
        self.stop_words = tuple(dict.fromkeys(s for s in (self.eot, eos) if s))

    def apply(
        self, messages: list[dict[str, Any]], add_generation_prompt: bool, tools: list[dict] | None = None
    ) -> str:
        from jinja2.exceptions import TemplateError
        from transformers.utils.chat_template_utils import render_jinja_template

        tokens = {k: v for k, v in (("bos_token", self.bos), ("eos_token", self.eos)) if v is not None}
        try:
            rendered, _ = render_jinja_template(
                conversations=[messages],
                tools=tools,
                chat_template=self.chat_template,
                add_generation_prompt=add_generation_prompt,
                **tokens,
                **self.kwargs,
            )
        except TemplateError as e:
            raise DataError(f"the tokenizer's chat template refused the conversation: {e}") from e
        return rendered[0]

    def _reply_parts(self, before: list[dict], reply: dict) -> tuple[str, str, str] | None:
        """(text of the reply, its end-of-turn text, separator) or None when the probe does not render."""
        try:
            prompt = self.apply(before, True)
            full = self.apply([*before, reply], False)
        except Exception:
            return None
        if not full.startswith(prompt):
            return None
        return _split_reply(full[len(prompt) :], reply["content"])

    def render(
        self, conv: Conversation, add_generation_prompt: bool = False, *, for_training: bool = False
    ) -> list[Segment]:
        msgs, tools = to_messages(conv), tools_of(conv)
        offset = len(msgs) - len(conv.messages)
        if add_generation_prompt and conv.messages and conv.messages[-1].role not in PROMPT_ROLES:
            raise ValueError(
                "add_generation_prompt needs a conversation that ends with a user/observation message"
            )
        segs: list[Segment] = []
        done = ""
        for i, msg in enumerate(conv.messages):
            if msg.role not in REPLY_ROLES:
                continue
            turn, k = i // 2, i + offset
            prompt = self.apply(msgs[:k], True, tools)
            full = self.apply(msgs[: k + 1], False, tools)
            if not prompt.startswith(done) or not full.startswith(prompt):
                raise _unstable(i)
            body, eot, sep = _split_reply(full[len(prompt) :], msg.content, self.eot)
            segs += [Segment(prompt[len(done) :], False, turn), Segment(body + eot, True, turn)]
            if for_training and not eot and self.eos:
                segs.append(Segment(self.eos, True, turn))
            segs.append(Segment(sep, False, turn))
            done = full
        final = self.apply(msgs, add_generation_prompt, tools)
        if not final.startswith(done):
            raise _unstable(len(conv.messages) - 1)
        segs.append(Segment(final[len(done) :], False, max(len(conv.messages) - 1, 0) // 2))
        return [s for s in segs if s.text]

    def text(
        self, conv: Conversation, add_generation_prompt: bool = False, *, for_training: bool = False
    ) -> str:
        """The template's own text; prefix-stability is needed only when rendering for training."""
        if for_training:
            return "".join(s.text for s in self.render(conv, add_generation_prompt, for_training=True))
        if add_generation_prompt and conv.messages and conv.messages[-1].role not in PROMPT_ROLES:
            raise ValueError(
                "add_generation_prompt needs a conversation that ends with a user/observation message"
            )
        return self.apply(to_messages(conv), add_generation_prompt, tools_of(conv))

    def prompt_text(self, conv: Conversation) -> str:
        return self.text(conv, add_generation_prompt=True)

    def __repr__(self) -> str:  # stable across runs: data caches are keyed by it
        digest = hashlib.sha256(self.chat_template.encode()).hexdigest()[:16]
        return f"JinjaTemplate(sha256={digest}, bos={self.bos!r}, eos={self.eos!r}, kwargs={self.kwargs!r})"


def _split_reply(reply: str, content: str, eot: str = "") -> tuple[str, str, str]:
    """A rendered reply -> (up to the end of the content, end-of-turn text, trailing whitespace)."""
    end = -1
    for probe in (content, content.strip()):
        if probe and probe in reply:
            end = reply.rindex(probe) + len(probe)
            break
    if end < 0:  # the template rewrote the content (function calls): it ends before the end-of-turn text
        end = len(reply.rstrip())
        if eot and reply[:end].endswith(eot):
            end -= len(eot)
    after = reply[end:]
    eot = after.rstrip()
    return reply[:end], eot, after[len(eot) :]


def _unstable(i: int) -> ConfigError:
    return ConfigError(
        f"the tokenizer's chat template does not render conversations prefix-stably: the text before message {i} "
        "changes once later messages follow (reasoning templates such as Qwen3's drop or move earlier content), "
        "so the trained spans cannot be found. Set `template:` to a named template (see `tuneboard data templates`)"
    )


def _lit(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a valid Jinja string literal


def _expr(fmt: str, eos: str, **exprs: str) -> str:
    """A format string as a Jinja expression: literals joined with the given expressions for placeholders."""
    parts = []
    for k, piece in enumerate(re.split(r"\{(content|system|eos)\}", fmt)):
        if k % 2:
            parts.append(_lit(eos) if piece == "eos" else exprs[piece])
        elif piece:
            parts.append(_lit(piece))
    return " + ".join(parts) or '""'


def _content(t: Template, role: str) -> str:
    return "message['content'] | trim" if role in t.strip else "message['content']"


def _tools_jinja(t: Template, system: str) -> str:
    """Jinja that adds the `tools` section to the system text in `system` (a namespace attribute)."""
    if not t.tools:
        return ""
    section = _expr(t.tools, t.eos_token, content="ns.defs")
    return (
        "{%- if tools is defined and tools -%}{%- set ns.defs = '' -%}{%- for tool in tools -%}"
        "{%- set ns.defs = ns.defs + '\\n' + (tool | tojson) -%}{%- endfor -%}"
        f"{{%- set {system} = ({system} + '\\n\\n' if {system} else '') + {section} -%}}{{%- endif -%}}"
    )


def _calls_jinja(t: Template, after: str) -> str:
    """Jinja writing an assistant message's `tool_calls` after the text `after` (as Qwen3's template does:
    a newline before each call but a first one that follows no text); templates without a call format
    write each call's JSON."""
    one = (
        '\'{"name": "\' + f.name + \'", "arguments": \' + '
        "(f.arguments if f.arguments is string else f.arguments | tojson) + '}'"
    )
    wrapped = _expr(t.tool_call or "{content}", t.eos_token, content="(" + one + ")")
    return (
        "{%- for call in message.tool_calls -%}{%- set f = call.function if call.function is defined else call -%}"
        f"{{{{- ('\\n' if ({after} or not loop.first) else '') + {wrapped} -}}}}{{%- endfor -%}}"
    )


def _observation_jinja(t: Template, content: str, msgs: str, idx: str) -> str:
    """Jinja for a tool result and the header after it. With `results_join`, consecutive tool messages (the
    results of parallel calls) become one message, as the official template writes them."""
    fmt, e = t.observation_format, t.eos_token
    body = fmt[: len(fmt) - len(t.header)] if t.header else fmt
    header = "not loop.last or add_generation_prompt"
    if not t.results_join:
        out = "{{- " + _expr(body, e, content=content) + " -}}"
    else:
        before, _, after = body.partition("{content}")
        tool = "['tool', 'observation']"
        nxt = f"({idx} + 1 < {msgs} | length and {msgs}[{idx} + 1]['role'] in {tool})"
        out = (
            f"{{%- if {idx} > 0 and {msgs}[{idx} - 1]['role'] in {tool} -%}}{{{{- {_lit(t.results_join)} -}}}}"
            f"{{%- else -%}}{{{{- {_expr(before, e)} -}}}}{{%- endif -%}}{{{{- {content} -}}}}"
            f"{{%- if not {nxt} -%}}{{{{- {_expr(after, e)} -}}}}{{%- endif -%}}"
        )
        header = f"({header}) and not {nxt}"
    if t.header:
        out += "{%- if " + header + " -%}{{- " + _lit(t.header) + " -}}{%- endif -%}"
    return out


def to_jinja(t: Template) -> str:
    """A Jinja chat template that makes `tokenizer.apply_chat_template` reproduce `t.render(...)` text exactly.

    Roles: system (first only), user, assistant (with `tool_calls`), tool/observation, function; `tools`
    for the templates that render them. `train_suffix` is left out (it is not part of the official text).
    For Qwen3 `enable_thinking` is read at render time as officially.
    """
    if isinstance(t, JinjaTemplate):
        return t.chat_template
    if isinstance(t, Qwen3Template):
        return _qwen3_jinja(t)
    e = t.eos_token
    sys = "(ns.system | trim)" if "system" in t.strip else "ns.system"
    out = [
        "{%- set ns = namespace(system=" + _lit(t.default_system) + ", into=-1, defs='') -%}",
        "{%- if messages and messages[0]['role'] == 'system' -%}{%- if messages[0]['content'] -%}"
        "{%- set ns.system = messages[0]['content'] -%}{%- endif -%}{%- set loop_messages = messages[1:] -%}"
        "{%- else -%}{%- set loop_messages = messages -%}{%- endif -%}",
        _tools_jinja(t, "ns.system"),
    ]
    if t.prefix:
        out.append("{{- " + _lit(t.prefix) + " -}}")
    if t.system_in_user is None:
        out.append("{%- if ns.system -%}{{- " + _expr(t.system, e, content=sys) + " -}}{%- endif -%}")
    else:
        pick = "ns.into < 0" if t.system_user == "first" else "true"
        out.append(
            "{%- for message in loop_messages -%}{%- if message['role'] == 'user' and "
            + pick
            + " -%}{%- set ns.into = loop.index0 -%}{%- endif -%}{%- endfor -%}"
        )
    out.append("{%- for message in loop_messages -%}")
    for k, (roles, fmt, role) in enumerate(
        [
            ("['user']", t.user, USER),
            ("['tool', 'observation']", t.observation_format, OBSERVATION),
            ("['assistant']", t.assistant, ASSISTANT),
            ("['function']", t.function_format, FUNCTION),
        ]
    ):
        out.append(("{%- if " if k == 0 else "{%- elif ") + "message['role'] in " + roles + " -%}")
        content = _content(t, role)
        if role == USER and t.system_in_user is not None:
            mixed = _expr(t.system_in_user, e, system="ns.system", content="(" + content + ")")
            content = "(" + mixed + " if loop.index0 == ns.into and ns.system else " + content + ")"
        if role == OBSERVATION:
            out.append(_observation_jinja(t, content, "loop_messages", "loop.index0"))
        elif role == USER:
            body = fmt[: len(fmt) - len(t.header)] if t.header else fmt
            out.append("{{- " + _expr(body, e, content=content) + " -}}")
            if t.header:
                out.append(
                    "{%- if not loop.last or add_generation_prompt -%}{{- "
                    + _lit(t.header)
                    + " -}}{%- endif -%}"
                )
        else:
            if role == ASSISTANT:  # a reply made of calls: the function format around text and calls
                out.append("{%- if message.tool_calls is defined and message.tool_calls -%}")
                out.append("{%- set c = message['content'] if message['content'] is string else '' -%}")
                before, _, after = t.function_format.partition("{content}")
                out.append("{{- " + _expr(before, e) + " + c -}}" + _calls_jinja(t, "c"))
                out.append("{{- " + _expr(after, e) + " -}}")
                if t.separator:
                    out.append("{{- " + _lit(t.separator) + " -}}")
                out.append("{%- else -%}")
            out.append("{{- " + _expr(fmt, e, content=content) + " -}}")
            if t.separator:
                out.append("{{- " + _lit(t.separator) + " -}}")
            if role == ASSISTANT:
                out.append("{%- endif -%}")
    out.append("{%- endif -%}{%- endfor -%}")
    if t.header:  # as official templates do, the header also follows a final reply
        out.append(
            "{%- if add_generation_prompt and (not loop_messages or loop_messages[-1]['role'] in "
            "['assistant', 'function']) -%}{{- " + _lit(t.header) + " -}}{%- endif -%}"
        )
    return "".join(out)


def _qwen3_jinja(t: Qwen3Template) -> str:
    sep, eot = t.separator, t.assistant.replace("{content}", "")
    think_default = "true" if t.enable_thinking else "false"
    return "".join(
        [
            "{%- set think = (enable_thinking if enable_thinking is defined else " + think_default + ") -%}",
            "{%- set ns = namespace(last_query=messages | length - 1, found=false, system='', defs='') -%}",
            "{%- if messages and messages[0]['role'] == 'system' -%}{%- set offset = 1 -%}",
            "{%- set ns.system = messages[0]['content'] -%}{%- else -%}{%- set offset = 0 -%}{%- endif -%}",
            _tools_jinja(t, "ns.system"),
            "{%- if ns.system -%}{{- " + _expr(t.system, "", content="ns.system") + " -}}{%- endif -%}",
            "{%- for message in messages[::-1] -%}{%- set c = message['content'] -%}",
            "{%- if not ns.found and message['role'] == 'user' and not (c.startswith('<tool_response>') and "
            "c.endswith('</tool_response>')) -%}{%- set ns.found = true -%}",
            "{%- set ns.last_query = messages | length - 1 - loop.index0 -%}{%- endif -%}{%- endfor -%}",
            "{%- for message in messages[offset:] -%}{%- set i = loop.index0 + offset -%}",
            "{%- set c = message['content'] if message['content'] is string else '' -%}",
            "{%- if message['role'] == 'user' -%}{{- "
            + _expr(t.user[: -len(IM_HEADER)], "", content="c")
            + " -}}",
            "{%- if not loop.last or add_generation_prompt -%}{{- " + _lit(IM_HEADER) + " -}}{%- endif -%}",
            "{%- elif message['role'] in ['tool', 'observation'] -%}"
            + _observation_jinja(t, "c", "messages", "i"),
            "{%- else -%}{%- set r = '' -%}",
            "{%- if '</think>' in c -%}{%- set r = c.split('</think>')[0].rstrip('\\n').split('<think>')[-1]"
            ".lstrip('\\n') -%}{%- set c = c.split('</think>')[-1].lstrip('\\n') -%}{%- endif -%}",
            "{%- if i > ns.last_query and (loop.last or r) -%}",
            "{{- '<think>\\n' + r.strip('\\n') + '\\n</think>\\n\\n' + c.lstrip('\\n') -}}",
            "{%- else -%}{{- c -}}{%- endif -%}",
            "{%- if message.tool_calls is defined and message.tool_calls -%}"
            + _calls_jinja(t, "c")
            + "{%- endif -%}",
            "{{- " + _lit(eot + sep) + " -}}",
            "{%- endif -%}{%- endfor -%}",
            "{%- if add_generation_prompt -%}{%- if messages[offset:] | length == 0 or messages[-1]['role'] in "
            "['assistant', 'function'] -%}{{- " + _lit(IM_HEADER) + " -}}{%- endif -%}",
            "{%- if not think -%}{{- " + _lit("<think>\n\n</think>\n\n") + " -}}{%- endif -%}{%- endif -%}",
        ]
    )


def render_official(
    chat_template: str, conv: Conversation, add_generation_prompt: bool, **kwargs: Any
) -> str:
    """The text transformers renders for `conv` with a chat template (for checks and tests)."""
    return JinjaTemplate(chat_template, **kwargs).apply(
        to_messages(conv), add_generation_prompt, tools_of(conv)
    )
