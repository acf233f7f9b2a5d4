"""The Ollama Modelfile and Go template written by `tuneboard export` (ollama.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tuneboard.data.formats import ASSISTANT, OBSERVATION, USER, Conversation, Message
from tuneboard.data.templates.named import TEMPLATES, get_template
from tuneboard.errors import TuneboardError
from tuneboard.export.ollama import modelfile, ollama_template


def test_chatml_template_pieces():
    text = ollama_template(get_template("chatml"))
    assert text.startswith("{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}")
    assert "{{- range $i, $_ := .Messages }}" in text
    assert (
        '{{- if eq .Role "user" }}<|im_start|>user\n{{ .Content }}<|im_end|>\n<|im_start|>assistant\n' in text
    )
    assert (
        '{{ else if eq .Role "tool" }}<|im_start|>tool\n{{ .Content }}<|im_end|>\n<|im_start|>assistant\n'
        in text
    )
    assert '{{ else if eq .Role "assistant" }}{{ .Content }}{{ if not $last }}<|im_end|>\n{{ end }}' in text
    assert text.endswith("{{- end }}")


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_trimming_never_touches_literal_text(name):
    """Every `{{-` follows an action and one line break: it trims that break, never template text."""
    text = ollama_template(get_template(name))
    starts = [i for i in range(len(text)) if text.startswith("{{-", i)]
    assert starts and all(text[:i].endswith("}}\n") for i in starts)


def test_modelfile_gguf_and_directory():
    t = get_template("qwen")
    text = modelfile(t, ["<|im_end|>", "<|endoftext|>"], "model-f16.gguf")
    lines = text.splitlines()
    assert "FROM ./model-f16.gguf" in lines
    assert 'PARAMETER stop "<|im_end|>"' in lines and 'PARAMETER stop "<|endoftext|>"' in lines
    assert f'SYSTEM """{t.default_system}"""' in lines
    assert f'TEMPLATE """{ollama_template(t)}"""' in text
    plain = modelfile(get_template("chatml"), ["<|im_end|>"], "")
    assert "FROM ." in plain.splitlines() and "SYSTEM" not in plain


def test_modelfile_quoting():
    text = modelfile(get_template("chatml"), ['say "stop"'], "m.gguf")
    assert 'PARAMETER stop """say "stop""""' in text
    with pytest.raises(TuneboardError, match="stop word"):
        modelfile(get_template("chatml"), ['a"""b'], "m.gguf")


def test_literal_braces_are_escaped():
    from dataclasses import replace

    t = replace(get_template("chatml"), name="braces", prefix="{{x}}")
    assert ollama_template(t).startswith('{{ "{{" }}x}}')


def test_system_in_user_and_fallbacks():
    mistral = ollama_template(get_template("mistral"))
    assert '{{ if eq $m.Role "user" }}{{ $su = $i }}{{ end }}' in mistral  # the last user message
    assert "{{ if and $.System (eq $i $su) }}[INST] {{ $.System }}\n\n{{ .Content }}[/INST]" in mistral
    assert "lt $su 0" in ollama_template(get_template("gemma"))  # the first user message
    assert "Qwen3Template" in ollama_template(get_template("qwen3"))

    class Jinja:
        name = "auto"
        default_system = ""
        stop_words = ("<|im_end|>",)

    text = ollama_template(Jinja())
    assert "{{ .Prompt }}" in text and "{{/* tuneboard:" in text
    mf = modelfile(Jinja(), ["<|im_end|>"], "m.gguf")
    assert "TEMPLATE" not in mf.replace("# No TEMPLATE", "").replace("Add TEMPLATE", "")


# --- rendering through Go's text/template, as Ollama does (only where a Go toolchain is installed) ---

_HARNESS = r"""
package main

import (
	"encoding/json"
	"os"
	"strings"
	"text/template"
)

type Message struct{ Role, Content string }

type Case struct {
	Template string
	System   string
	Messages []*Message
}

func main() {
	var cases []Case
	if err := json.NewDecoder(os.Stdin).Decode(&cases); err != nil {
		panic(err)
	}
	var out []string
	for _, c := range cases {
		t := template.Must(template.New("").Option("missingkey=zero").Parse(c.Template))
		var b strings.Builder
		if err := t.Execute(&b, map[string]any{"System": c.System, "Messages": c.Messages}); err != nil {
			panic(err)
		}
		out = append(out, b.String())
	}
	json.NewEncoder(os.Stdout).Encode(out)
}
"""

_CONVERSATIONS = [
    Conversation([Message(USER, "Hi there")]),
    Conversation(
        [Message(USER, "Hi"), Message(ASSISTANT, "Hello!"), Message(USER, "Who are you?")], system="Be brief."
    ),
    Conversation([Message(USER, "Weather?"), Message(ASSISTANT, "call"), Message(OBSERVATION, "sunny")]),
    Conversation(
        [
            Message(USER, "a"),
            Message(ASSISTANT, "b"),
            Message(USER, "c"),
            Message(ASSISTANT, "d"),
            Message(USER, "e"),
        ],
        system="S",
    ),
]


def _ollama_messages(conv: Conversation) -> list[dict[str, str]]:
    role = {USER: "user", ASSISTANT: "assistant", OBSERVATION: "tool"}
    return [{"Role": role[m.role], "Content": m.content} for m in conv.messages]


@pytest.fixture(scope="module")
def go_render(tmp_path_factory):
    go = shutil.which("go")
    if go is None:
        pytest.skip("no Go toolchain: the Go-template rendering check needs `go`")
    d = tmp_path_factory.mktemp("gotmpl")
    (d / "main.go").write_text(_HARNESS)
    env = dict(os.environ)
    if not any(env.get(k) for k in ("GOCACHE", "XDG_CACHE_HOME", "HOME")):
        env["GOCACHE"] = str(d / "cache")
    build = [go, "build", "-o", str(d / "render"), str(d / "main.go")]
    subprocess.run(build, check=True, cwd=d, env=env, timeout=300)

    def render(cases: list[dict]) -> list[str]:
        done = subprocess.run(
            [str(d / "render")],
            input=json.dumps(cases),
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return json.loads(done.stdout)

    return render


@pytest.mark.parametrize("name", sorted(n for n in TEMPLATES if n != "qwen3"))
def test_go_rendering_equals_tuneboard(go_render, name):
    """Ollama's rendering of each conversation (Modelfile SYSTEM as the default) equals the generation prompt."""
    t = get_template(name)
    text = ollama_template(t)
    cases = [
        {"Template": text, "System": conv.system or t.default_system, "Messages": _ollama_messages(conv)}
        for conv in _CONVERSATIONS
    ]
    assert go_render(cases) == [t.prompt_text(conv) for conv in _CONVERSATIONS]


def test_go_rendering_qwen3(go_render):
    """Qwen3 (thinking): equal for prompts whose earlier replies carry no reasoning; no-think adds the empty block."""
    from dataclasses import replace

    for t in (get_template("qwen3"), replace(get_template("qwen3"), enable_thinking=False)):
        conv = _CONVERSATIONS[1]
        case = {"Template": ollama_template(t), "System": conv.system, "Messages": _ollama_messages(conv)}
        assert go_render([case]) == [t.prompt_text(conv)]
