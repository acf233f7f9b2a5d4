"""Jinja chat templates: "auto" (render with the tokenizer's own template) and `to_jinja` (export a named one).

Data layer, step 4 of the flow, beside templates.py. Rendering goes through transformers' own Jinja
environment, so the text equals `tokenizer.apply_chat_template(...)`.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from ..errors import ConfigError, DataError
from .formats import ASSISTANT, FUNCTION, OBSERVATION, PROMPT_ROLES, REPLY_ROLES, USER, Conversation
from .rendering import Qwen3Template, Segment, Template
from .templates import IM_HEADER

_ROLE = {USER: "user", ASSISTANT: "assistant", OBSERVATION: "tool", FUNCTION: "assistant"}


def to_messages(conv: Conversation, function_role: str = "assistant") -> list[dict[str, str]]:
    """OpenAI-style messages: the system first (when set), observations as 'tool', function calls as 'assistant'
    (or `function_role`: templates made by `to_jinja` also accept 'function')."""
    roles = {**_ROLE, FUNCTION: function_role}
    head = [{"role": "system", "content": conv.system}] if conv.system else []
    return head + [{"role": roles[m.role], "content": m.content} for m in conv.messages]


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
        probe = self._reply_parts([{"role": "user", "content": "x"}], {"role": "assistant", "content": "y"})
        eot = probe[1] if probe else ""
        self.stop_words = tuple(dict.fromkeys(s for s in (eot, eos) if s))

    def apply(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
        from jinja2.exceptions import TemplateError
        from transformers.utils.chat_template_utils import render_jinja_template

        tokens = {k: v for k, v in (("bos_token", self.bos), ("eos_token", self.eos)) if v is not None}
        try:
            rendered, _ = render_jinja_template(
                conversations=[messages],
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
        msgs = to_messages(conv)
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
            prompt = self.apply(msgs[:k], True)
            full = self.apply(msgs[: k + 1], False)
            if not prompt.startswith(done) or not full.startswith(prompt):
                raise _unstable(i)
            body, eot, sep = _split_reply(full[len(prompt) :], msg.content)
            segs += [Segment(prompt[len(done) :], False, turn), Segment(body + eot, True, turn)]
            if for_training and not eot and self.eos:
                segs.append(Segment(self.eos, True, turn))
            segs.append(Segment(sep, False, turn))
            done = full
        final = self.apply(msgs, add_generation_prompt)
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
        return self.apply(to_messages(conv), add_generation_prompt)

    def prompt_text(self, conv: Conversation) -> str:
        return self.text(conv, add_generation_prompt=True)

    def __repr__(self) -> str:  # stable across runs: data caches are keyed by it
        digest = hashlib.sha256(self.chat_template.encode()).hexdigest()[:16]
        return f"JinjaTemplate(sha256={digest}, bos={self.bos!r}, eos={self.eos!r}, kwargs={self.kwargs!r})"


def _split_reply(reply: str, content: str) -> tuple[str, str, str]:
    """A rendered reply -> (up to the end of the content, end-of-turn text, trailing whitespace)."""
    end = -1
    for probe in (content, content.strip()):
        if probe and probe in reply:
            end = reply.rindex(probe) + len(probe)
            break
    if end < 0:  # the template changed the content: everything up to the trailing whitespace is the reply
        end = len(reply.rstrip())
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


def to_jinja(t: Template) -> str:
    """A Jinja chat template that makes `tokenizer.apply_chat_template` reproduce `t.render(...)` text exactly.

    Roles: system (first only), user, assistant, tool/observation, function. `train_suffix` is left out (it
    is not part of the official text). For Qwen3 `enable_thinking` is read at render time as officially.
    """
    if isinstance(t, JinjaTemplate):
        return t.chat_template
    if isinstance(t, Qwen3Template):
        return _qwen3_jinja(t)
    e = t.eos_token
    sys = "(ns.system | trim)" if "system" in t.strip else "ns.system"
    out = [
        "{%- set ns = namespace(system=" + _lit(t.default_system) + ", into=-1) -%}",
        "{%- if messages and messages[0]['role'] == 'system' -%}{%- if messages[0]['content'] -%}"
        "{%- set ns.system = messages[0]['content'] -%}{%- endif -%}{%- set loop_messages = messages[1:] -%}"
        "{%- else -%}{%- set loop_messages = messages -%}{%- endif -%}",
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
        if role in (USER, OBSERVATION):
            body = fmt[: len(fmt) - len(t.header)] if t.header else fmt
            out.append("{{- " + _expr(body, e, content=content) + " -}}")
            if t.header:
                out.append(
                    "{%- if not loop.last or add_generation_prompt -%}{{- "
                    + _lit(t.header)
                    + " -}}{%- endif -%}"
                )
        else:
            out.append("{{- " + _expr(fmt, e, content=content) + " -}}")
            if t.separator:
                out.append("{{- " + _lit(t.separator) + " -}}")
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
            "{%- if messages and messages[0]['role'] == 'system' -%}{%- set offset = 1 -%}",
            "{%- if messages[0]['content'] -%}{{- "
            + _expr(t.system, "", content="messages[0]['content']")
            + " -}}",
            "{%- endif -%}{%- else -%}{%- set offset = 0 -%}{%- endif -%}",
            "{%- set ns = namespace(last_query=messages | length - 1, found=false) -%}",
            "{%- for message in messages[::-1] -%}{%- set c = message['content'] -%}",
            "{%- if not ns.found and message['role'] == 'user' and not (c.startswith('<tool_response>') and "
            "c.endswith('</tool_response>')) -%}{%- set ns.found = true -%}",
            "{%- set ns.last_query = messages | length - 1 - loop.index0 -%}{%- endif -%}{%- endfor -%}",
            "{%- for message in messages[offset:] -%}{%- set i = loop.index0 + offset -%}",
            "{%- set c = message['content'] -%}",
            "{%- if message['role'] in ['user', 'tool', 'observation'] -%}",
            "{%- if message['role'] == 'user' -%}{{- "
            + _expr(t.user[: -len(IM_HEADER)], "", content="c")
            + " -}}",
            "{%- else -%}{{- "
            + _expr(t.observation_format[: -len(IM_HEADER)], "", content="c")
            + " -}}{%- endif -%}",
            "{%- if not loop.last or add_generation_prompt -%}{{- " + _lit(IM_HEADER) + " -}}{%- endif -%}",
            "{%- else -%}{%- set r = '' -%}",
            "{%- if '</think>' in c -%}{%- set r = c.split('</think>')[0].rstrip('\\n').split('<think>')[-1]"
            ".lstrip('\\n') -%}{%- set c = c.split('</think>')[-1].lstrip('\\n') -%}{%- endif -%}",
            "{%- if i > ns.last_query and (loop.last or r) -%}",
            "{{- '<think>\\n' + r.strip('\\n') + '\\n</think>\\n\\n' + c.lstrip('\\n') -}}",
            "{%- else -%}{{- c -}}{%- endif -%}{{- " + _lit(eot + sep) + " -}}",
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
    return JinjaTemplate(chat_template, **kwargs).apply(to_messages(conv), add_generation_prompt)
