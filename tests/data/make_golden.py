"""Regenerate tests/data/golden/templates/<name>.json from tuneboard's named templates.

    .venv/bin/python tests/data/make_golden.py

Each file holds the conversations below, the rendered text, the trained character spans, the
generation prompt of the conversation without its last reply, and (when it differs) the text rendered
for training. The texts were checked once, character for character, against the official Jinja chat
templates rendered by transformers (`tokenizer.apply_chat_template`, transformers 5.24, jinja2 3.1.6);
the official Jinja is not part of this repository. Checked against (see CHECKED_AGAINST):

- chatml: the generic role-based ChatML template (teknium/OpenHermes-2.5-Mistral-7B's tokenizer_config).
- qwen: Qwen/Qwen2.5-7B-Instruct tokenizer_config.json (the 2024-09 Qwen2.5 template, shared by all sizes).
- qwen3: Qwen/Qwen3-0.6B / Qwen3-8B tokenizer_config.json (2025-04 release), incl. enable_thinking=False.
- qwen3_nothink: Qwen/Qwen3-4B-Instruct-2507 chat template (2025-07; copy with generation markers).
- llama3: meta-llama/Meta-Llama-3-8B-Instruct tokenizer_config.json (2024-04).
- glm4: THUDM/glm-4-9b-chat tokenizer_config.json (2024-06); `training` adds <|endoftext|>.
- mistral: mistralai/Mistral-7B-Instruct-v0.3 ('v3' template with tool support, 2024-08 revision);
  with a system prompt the official text of a finished conversation drops it, so the check folds the
  system into the last user message (= the official generation prompt + reply).
- gemma: google/gemma-2-2b-it (no system) and google/gemma-3-1b-it / 12b-it (with system), 2025-03.
- deepseek: deepseek-ai/deepseek-llm-7b-chat = DeepSeek-V2-Chat template (2024-05).
- default, alpaca, empty: no model ships these; they follow LLaMA-Factory's template definitions.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from tuneboard.data.formats import Conversation, Message  # noqa: E402
from tuneboard.data.templates import TEMPLATES, Template  # noqa: E402

GOLDEN = Path(__file__).resolve().parent / "golden" / "templates"

CHECKED_AGAINST = {
    "chatml": "generic ChatML (teknium/OpenHermes-2.5-Mistral-7B tokenizer_config.json)",
    "qwen": "Qwen/Qwen2.5-7B-Instruct tokenizer_config.json chat_template (2024-09)",
    "qwen3": "Qwen/Qwen3-8B (= Qwen3-0.6B) tokenizer_config.json chat_template (2025-04)",
    "qwen3_nothink": "Qwen/Qwen3-4B-Instruct-2507 chat template (2025-07)",
    "llama3": "meta-llama/Meta-Llama-3-8B-Instruct tokenizer_config.json chat_template (2024-04)",
    "glm4": "THUDM/glm-4-9b-chat tokenizer_config.json chat_template (2024-06)",
    "mistral": "mistralai/Mistral-7B-Instruct-v0.3 chat_template ('v3' tool template, 2024-08)",
    "gemma": "google/gemma-2-2b-it (no system) and google/gemma-3-12b-it (system) chat_template",
    "deepseek": "deepseek-ai/deepseek-llm-7b-chat = DeepSeek-V2-Chat chat_template (2024-05)",
    "default": "LLaMA-Factory 'default' template (no official model template)",
    "alpaca": "LLaMA-Factory 'alpaca' template (no official model template)",
    "empty": "LLaMA-Factory 'empty' template (no official model template)",
}

U, A, OBS, F = "user", "assistant", "observation", "function"
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
]

VARIANTS: dict[str, list[dict]] = {"qwen3": [{}, {"enable_thinking": False}]}


def conversation(system: str, messages: list[tuple[str, str]]) -> Conversation:
    return Conversation([Message(r, c) for r, c in messages], system=system)


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
    conv = conversation(system, messages)
    text, trained = spans(t, conv)
    head = conversation(system, messages[:-1])
    out = {
        "name": name,
        "variant": variant,
        "conversation": {"system": system, "messages": [{"role": r, "content": c} for r, c in messages]},
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
