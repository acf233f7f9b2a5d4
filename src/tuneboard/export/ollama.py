"""Ollama Modelfile for an export: the chat template in Ollama's Go-template syntax, stop words, default system.

Inference layer: export.py writes `modelfile(...)` beside the exported model (a GGUF file or a safetensors dir).
"""

from __future__ import annotations

import re
from typing import Any

from ..data.formats import USER, Conversation, Message
from ..data.templates.base import Template
from ..errors import TuneboardError

_PLACEHOLDER = re.compile(r"\{(content|system|eos)\}")

FALLBACK = (
    "{{/* tuneboard: %s; this plain form is only a fallback, set the family's Ollama template by hand */}}"
    "{{ if .System }}{{ .System }}\n\n{{ end }}{{ if .Prompt }}{{ .Prompt }}{{ end }}{{ .Response }}"
)


def _literal(text: str) -> str:
    """Text that a Go template prints as is (its action delimiters and a Modelfile's closing quotes escaped)."""
    return text.replace("{{", '{{ "{{" }}').replace('"""', '""{{ "\\"" }}')


def _go(fmt: str, eos: str, content: str = "{{ .Content }}") -> str:
    """A tuneboard format string as Go-template text: {content} -> `content`, {system} -> $.System."""
    out, pos = [], 0
    for m in _PLACEHOLDER.finditer(fmt):
        out.append(_literal(fmt[pos : m.start()]))
        key = m.group(1)
        out.append(content if key == "content" else "{{ $.System }}" if key == "system" else _literal(eos))
        pos = m.end()
    out.append(_literal(fmt[pos:]))
    return "".join(out)


def _generation_suffix(t: Template) -> str | None:
    """Text a template adds after the assistant header of a generation prompt ("" for most), None if unknown."""
    probe = Conversation([Message(USER, "x")])
    bare, prompt = t.text(probe), t.prompt_text(probe)
    head = bare + t.header
    return prompt[len(head) :] if prompt.startswith(head) else None


def ollama_template(template: Any) -> str:
    """`template` in Ollama's Go-template syntax, rendering the same text for system/user/assistant/tool turns.

    Lines break only between two actions, where `{{-` trims the break itself: literal text is never trimmed.
    Content is not stripped (Go templates cannot), and assistant tool calls are not rendered. A template that
    is not a tuneboard `Template` (the tokenizer's own Jinja template) gets a plain fallback.
    """
    if not isinstance(template, Template):
        return FALLBACK % f"no Ollama form for the '{getattr(template, 'name', template)}' chat template"
    t, eos = template, template.eos_token
    suffix = _generation_suffix(t)
    first = _literal(t.prefix)
    if t.system_in_user is None:
        first += "{{ if .System }}" + _go(t.system, eos, "{{ .System }}") + "{{ end }}"
    else:  # the user message that carries the system prompt: the first or the last one
        pick = 'eq $m.Role "user"' if t.system_user == "last" else '(and (eq $m.Role "user") (lt $su 0))'
        first += (
            "{{ $su := -1 }}{{ range $i, $m := .Messages }}{{ if "
            + pick
            + " }}{{ $su = $i }}{{ end }}{{ end }}"
        )
    after = "{{ if $last }}" + _literal(suffix) + "{{ end }}" if suffix else ""
    user = _go(t.user, eos) + after
    if t.system_in_user is not None:
        with_system = _go(Template.fill(t.user, t.system_in_user), eos) + after
        user = "{{ if and $.System (eq $i $su) }}" + with_system + "{{ else }}" + user + "{{ end }}"
    head, _, tail = t.assistant.partition("{content}")
    reply = _go(head, eos) + "{{ .Content }}{{ if not $last }}" + _go(tail + t.separator, eos) + "{{ end }}"
    branches = (  # one line: each body may end in literal text, which a `{{-` on the next line would trim
        '{{- if eq .Role "user" }}'
        + user
        + '{{ else if eq .Role "tool" }}'
        + _go(t.observation_format, eos)
        + after
    )
    branches += '{{ else if eq .Role "assistant" }}' + reply + "{{ end }}"
    lines = [
        first,
        "{{- range $i, $_ := .Messages }}",
        "{{- $last := eq (len (slice $.Messages $i)) 1 }}",
        branches,
        "{{- end }}",
    ]
    if type(t) is not Template or suffix is None:
        note = f"tuneboard: {type(t).__name__} '{t.name}' renders some turns its own way; this follows its fields"
        lines.append("{{- /* " + note.replace("*/", "* /") + " */}}")
    return "\n".join(lines)


def _quote(value: str, what: str) -> str:
    if '"""' in value:
        raise TuneboardError(
            f'Modelfile: the {what} contains """, which a Modelfile cannot quote: {value[:80]!r}'
        )
    return f'"""{value}"""'


def modelfile(template: Any, stop_words: list[str], gguf_name: str) -> str:
    """An Ollama Modelfile: FROM the GGUF file (or `.`, a safetensors directory Ollama imports), TEMPLATE,
    a stop parameter per stop word, and SYSTEM when the template has a default system prompt."""
    lines = [
        "# Ollama Modelfile written by tuneboard. In this directory: ollama create <name> -f Modelfile",
        f"FROM ./{gguf_name}" if gguf_name else "FROM .",
    ]
    if isinstance(template, Template):
        lines.append(f"TEMPLATE {_quote(ollama_template(template), 'chat template')}")
    else:  # the model's own Jinja template: Ollama matches it against the templates it knows
        lines += [
            "# No TEMPLATE: the chat template is the model's own (template: auto), and Ollama picks its Go form",
            "# from the tokenizer's chat template when it knows the model family. Add TEMPLATE if replies look off.",
        ]
    for word in dict.fromkeys(w for w in stop_words if w):
        value = _quote(word, "stop word") if '"' in word else '"' + word + '"'
        lines.append(f"PARAMETER stop {value}")
    system = getattr(template, "default_system", "")
    if system:
        lines.append(f"SYSTEM {_quote(system, 'default system prompt')}")
    return "\n".join(lines) + "\n"
