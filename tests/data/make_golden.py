"""Regenerate tests/data/golden/templates/<name>.json from tuneboard's named templates.

    .venv/bin/python tests/data/make_golden.py

Each file holds the conversations below, the rendered text, the trained character spans, the
generation prompt of the conversation without its last reply (with and without the header), and, when
it differs, the text rendered for training. Review a diff of these files like a code change.

The texts were checked once (2025, transformers 5.24 `tokenizer.apply_chat_template`, jinja2 3.1.6),
character for character, against each family's official Jinja chat template, transcribed from public
copies of the models' tokenizer_config.json (llama.cpp models/templates and tests/test-chat-template.cpp,
Hugging Face API dumps, project fixtures). The official Jinja is not part of this repository.
CHECKED_AGAINST names the template used per tuneboard template: 256 renders, 0 differences. Mistral:
the official text of a finished conversation drops the system prompt, so there the check folded the
system into the last user message (what the official template renders at generation time).

The cases with tool definitions ("tools", "tools_parallel_system") were checked the same way in 2026-11
(transformers 5, `tools=` and assistant `tool_calls` as the official templates read them) for qwen, qwen3
(both variants) and qwen3_nothink: 132 renders, 3 differences, all one deliberate one: Qwen2.5's template
writes call arguments given as a JSON string as a quoted string; tuneboard writes them as given, as
Qwen3's template does (the model is meant to produce an object there).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from tuneboard.data.formats import Conversation, Message  # noqa: E402
from tuneboard.data.templates.base import Template  # noqa: E402
from tuneboard.data.templates.named import TEMPLATES  # noqa: E402

GOLDEN = Path(__file__).resolve().parent / "golden" / "templates"

CHECKED_AGAINST = {
    "chatml": "generic role-based ChatML of teknium/OpenHermes-2.5-Mistral-7B",
    "qwen": "Qwen/Qwen2.5-7B-Instruct (= Qwen2.5-1.5B-Instruct) tokenizer_config.json, Qwen2.5 release 2024-09",
    "qwen3": "Qwen/Qwen3-0.6B (= Qwen3-8B) tokenizer_config.json, 2025-04; enable_thinking unset and False",
    "qwen3_nothink": "Qwen/Qwen3-4B-Instruct-2507 chat template, 2025-07 (copy without the tool branches)",
    "llama3": "meta-llama/Meta-Llama-3-8B-Instruct tokenizer_config.json, 2024-04",
    "glm4": "THUDM/glm-4-9b-chat chat template (as in the glm4:9b GGUF), 2024-06",
    "mistral": "mistralai/Mistral-7B-Instruct-v0.3 'v3' template with tool calls (2024 revision)",
    "gemma": "google/gemma-2-2b-it (no system) and google/gemma-3-12b-it (with system), 2025-03",
    "deepseek": "DeepSeek-V2-Chat template (the deepseek-llm-7b-chat format), 2024-05",
    "default": "LLaMA-Factory 'default' template (no model ships an official one)",
    "alpaca": "LLaMA-Factory 'alpaca' template (no model ships an official one)",
    "empty": "LLaMA-Factory 'empty' template (no model ships an official one)",
}

U, A, OBS, F = "user", "assistant", "observation", "function"
WEATHER = {
    "name": "get_weather",
    "description": "查询城市的当前天气",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
TOOLS = {  # conversation name -> its `tools` text (LLaMA-Factory's bare definitions, or OpenAI's form)
    "tools": json.dumps([WEATHER], ensure_ascii=False),
    "tools_parallel_system": json.dumps([{"type": "function", "function": WEATHER}], ensure_ascii=False),
}
CONVERSATIONS: list[tuple[str, str, list[tuple[str, str]]]] = [
    ("single", "", [(U, "What is the capital of France?"), (A, "The capital of France is Paris.")]),
    (
        "single_system",
        "You are a concise geography tutor.",
        [(U, "What is the capital of France?"), (A, "Paris.")],
    ),
    (
        "multi_turn",
        "",
        [
            (U, "Hi!"),
            (A, "Hello! How can I help?"),
            (U, "Name a prime."),
            (A, "7."),
            (U, "Another?"),
            (A, "11."),
        ],
    ),
    (
        "multi_turn_system",
        "Answer in one word.",
        [(U, "Color of the sky?"), (A, "Blue."), (U, "Color of grass?"), (A, "Green.")],
    ),
    (
        "chinese",
        "你是一个乐于助人的助手。",
        [
            (U, "请用一句话介绍一下长城。"),
            (A, "长城是中国古代修建的军事防御工程，绵延两万多公里。"),
            (U, "它有多长？"),
            (A, "总长度约为21196公里。"),
        ],
    ),
    (
        "braces_jinja",
        "Keep {braces}, {content} and {{ jinja }} literal.",
        [
            (U, "Fill {content} with {{ name }} and {% if x %}yes{% endif %}; also {system} and {eos}."),
            (A, 'Here: {"a": {"b": 1}} and {{content}} stay as written, {# not a comment #} {%- raw %}.'),
        ],
    ),
    ("whitespace", "", [(U, "  spaces around  \n"), (A, "\n\nreply with newlines around\n")]),
    (
        "think",
        "",
        [
            (U, "2+2?"),
            (A, "<think>\nsimple sum\n</think>\n\n4"),
            (U, "And 3+3?"),
            (A, "<think>\nagain\n</think>\n\n6"),
        ],
    ),
    (
        "tool",
        "",
        [
            (U, "Weather in Paris?"),
            (F, '{"name": "get_weather", "arguments": {"city": "Paris"}}'),
            (OBS, '{"temperature": 21}'),
            (A, "It is 21°C in Paris."),
        ],
    ),
    (
        "tools",
        "",
        [
            (U, "Weather in Paris?"),
            (F, '{"name": "get_weather", "arguments": {"city": "Paris"}}'),
            (OBS, '{"temperature": 21}'),
            (A, "It is 21°C in Paris."),
        ],
    ),
    (
        "tools_parallel_system",
        "You check the weather.",
        [
            (U, "巴黎和罗马的天气？"),
            (
                F,
                '[{"name": "get_weather", "arguments": {"city": "巴黎"}}, {"name": "get_weather", "arguments": "{\\"city\\": \\"罗马\\"}"}]',
            ),
            (OBS, '[{"temperature": 21}, {"temperature": 25}]'),
            (A, "巴黎 21°C，罗马 25°C。"),
        ],
    ),
]

VARIANTS: dict[str, list[dict]] = {"qwen3": [{}, {"enable_thinking": False}]}


def conversation(system: str, messages: list[tuple[str, str]], tools: str = "") -> Conversation:
    return Conversation([Message(r, c) for r, c in messages], system=system, tools=tools)


def spans(t: Template, conv: Conversation, **kw) -> tuple[str, list[list[int]]]:
    out, pos, text = [], 0, []
    for s in t.render(conv, **kw):
        if s.train:
            if out and out[-1][1] == pos:
                out[-1][1] = pos + len(s.text)  # adjacent trained segments form one span
            else:
                out.append([pos, pos + len(s.text)])
        pos += len(s.text)
        text.append(s.text)
    return "".join(text), out


def case(t: Template, name: str, system: str, messages: list[tuple[str, str]], variant: dict) -> dict:
    tools = TOOLS.get(name, "")
    conv = conversation(system, messages, tools)
    text, trained = spans(t, conv)
    head = conversation(system, messages[:-1], tools)
    recorded = {"system": system, "messages": [{"role": r, "content": c} for r, c in messages]}
    out = {
        "name": name,
        "variant": variant,
        "conversation": {**recorded, "tools": tools} if tools else recorded,
        "text": text,
        "trained": trained,
        "trained_text": [text[a:b] for a, b in trained],
        "prompt": t.text(head, add_generation_prompt=True),
        "prompt_no_header": t.text(head),
    }
    training, training_spans = spans(t, conv, for_training=True)
    if (training, training_spans) != (text, trained):
        out["training"] = {"text": training, "trained": training_spans}
    return out


def golden(name: str) -> dict:
    base = TEMPLATES[name]
    cases = []
    for variant in VARIANTS.get(name, [{}]):
        t = dataclasses.replace(base, **variant) if variant else base
        cases += [case(t, *c, variant) for c in CONVERSATIONS]
    return {"template": name, "checked_against": CHECKED_AGAINST[name], "cases": cases}


def main() -> None:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for name in sorted(TEMPLATES):
        path = GOLDEN / f"{name}.json"
        path.write_text(json.dumps(golden(name), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        print("wrote", path.relative_to(ROOT))


if __name__ == "__main__":
    main()
