"""The web UI's strings, Chinese and English, read from locales/{zh,en}.json (no text lives in code).

Interface layer helper (no gradio).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

LANGS = ("en", "zh")
DEFAULT = "en"


@cache
def table(lang: str) -> dict[str, str]:
    text = resources.files(__package__).joinpath("locales", f"{lang}.json").read_text(encoding="utf-8")
    return json.loads(text)


def normalize(lang: str | None) -> str:
    """A browser or user language tag ('zh-CN', 'en-US', 'zh') -> one of LANGS."""
    tag = (lang or "").strip().lower()
    return "zh" if tag.startswith("zh") else DEFAULT


def t(lang: str | None, key: str, **values: object) -> str:
    """The string `key` in `lang` (English when that language lacks it), with {placeholders} filled."""
    lang = normalize(lang)
    text = table(lang).get(key)
    if text is None:
        text = table(DEFAULT).get(key)
    if text is None:
        raise KeyError(f"no locale string '{key}'")
    return text.format(**values) if values else text


def missing() -> dict[str, list[str]]:
    """Keys that one language has and another lacks (a test keeps this empty)."""
    keys = {lang: set(table(lang)) for lang in LANGS}
    every = set().union(*keys.values())
    return {lang: sorted(every - k) for lang, k in keys.items() if every - k}


def choices() -> list[tuple[str, str]]:
    """The language switch's options, each named in its own language."""
    return [(table(lang)["lang.name"], lang) for lang in LANGS]
