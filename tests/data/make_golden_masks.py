"""Regenerate tests/data/golden/label_masks/<template>.json: label masks on the builtin tiny tokenizer.

    .venv/bin/python tests/data/make_golden_masks.py

Each case is a conversation encoded by tokenize.encode under one setting (default, mask_history,
train_on_prompt, a small cutoff_len); the file stores the token count and the decoded text of each run
of equally-labelled tokens, marked trained or not. Review a diff of these files like a code change:
a changed mask is a changed training objective.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from tuneboard.data.formats import Conversation, Message  # noqa: E402
from tuneboard.data.templates.resolve import resolve_template  # noqa: E402
from tuneboard.data.tokenize import IGNORE, encode  # noqa: E402

GOLDEN = Path(__file__).resolve().parent / "golden" / "label_masks"
TEMPLATES = ("qwen", "qwen3", "alpaca", "glm4")
U, A, OBS, F = "user", "assistant", "observation", "function"
CONVERSATIONS = {
    "single": ("", [(U, "What is the capital of France?"), (A, "Paris.")]),
    "multi_turn_zh": (
        "你是一个乐于助人的助手。",
        [(U, "番茄叶子发黄怎么办？"), (A, "先检查是否浇水过多。"), (U, "还有呢？"), (A, "补充一些氮肥。")],
    ),
    "tool": (
        "",
        [
            (U, "Weather in Paris?"),
            (F, '{"name": "w", "arguments": {"city": "Paris"}}'),
            (OBS, '{"t": 21}'),
            (A, "21°C."),
        ],
    ),
    "tool_definitions": (
        "查天气。",
        [
            (U, "巴黎天气？"),
            (F, '{"name": "w", "arguments": {"city": "巴黎"}}'),
            (OBS, '{"t": 21}'),
            (A, "21°C。"),
        ],
    ),
}
TOOLS = {
    "tool_definitions": '[{"name": "w", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]'
}
SETTINGS = {
    "default": {},
    "mask_history": {"mask_history": True},
    "train_on_prompt": {"train_on_prompt": True},
    "cutoff_24": {"cutoff_len": 24},
}


def runs(tokenizer, ids: list[int], labels: list[int]) -> list[list]:
    """Decoded runs of consecutive tokens that are all trained or all masked: [[text, trained], ...]."""
    out, start = [], 0
    for k in range(1, len(ids) + 1):
        if k == len(ids) or (labels[k] != IGNORE) != (labels[start] != IGNORE):
            out.append([tokenizer.decode(ids[start:k]), labels[start] != IGNORE])
            start = k
    return out


def cases(tokenizer, template_name: str) -> list[dict]:
    template = resolve_template(template_name, None, tokenizer.eos_token)
    out = []
    for conv_name, (system, msgs) in CONVERSATIONS.items():
        tools = TOOLS.get(conv_name, "")
        conv = Conversation([Message(r, c) for r, c in msgs], system=system, tools=tools)
        for setting, kw in SETTINGS.items():
            kw = {"cutoff_len": 4096, **kw}
            enc, _ = encode([conv], template, tokenizer, **kw)
            ids, labels = enc["input_ids"][0], enc["labels"][0]
            out.append(
                {
                    "conversation": conv_name,
                    "setting": setting,
                    "system": system,
                    "messages": [{"role": r, "content": c} for r, c in msgs],
                    **({"tools": tools} if tools else {}),
                    "kwargs": kw,
                    "tokens": len(ids),
                    "trained": sum(1 for lab in labels if lab != IGNORE),
                    "runs": runs(tokenizer, ids, labels),
                }
            )
    return out


def main() -> None:
    from transformers import AutoTokenizer

    from tuneboard.model import tiny

    tokenizer = AutoTokenizer.from_pretrained(tiny.ensure())
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for name in TEMPLATES:
        data = {"template": name, "tokenizer": "builtin:tiny", "cases": cases(tokenizer, name)}
        (GOLDEN / f"{name}.json").write_text(
            json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
        )
        print(f"wrote {GOLDEN / name}.json ({len(data['cases'])} cases)")


if __name__ == "__main__":
    main()
