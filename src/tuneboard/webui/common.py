"""What every tab of the web UI shares: the workspace, the job runner, the top bar's choices, messages.

Interface layer helper for the gradio tabs.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import gradio as gr

from .. import hub as hubs
from ..data.registry import InvalidJSON, read_registry
from ..errors import TuneboardError
from ..model.tiny import bundled_data_dir
from . import lookup
from .locales import LANGS, t
from .paths import OutsideRoot, Workspace
from .runner import JobRunning, Runner
from .texts import Texts

HUBS = (("Hugging Face", "huggingface"), ("ModelScope", "modelscope"))
FINETUNING = ("lora", "freeze", "full")


@dataclass
class Ctx:
    ws: Workspace
    runner: Runner
    ui: Texts
    demo: Any = None  # the gr.Blocks being built (for page-load events)
    lang: Any = None
    top: list[Any] = field(default_factory=list)  # model, hub, finetuning, output, template, trust
    dataset_dir: Any = None
    # dataset dropdowns and their role ("test", "train", "any"); a "chosen" gr.State after a picker says
    # whether the user has set that picker by hand (until then it follows the default pick)
    pickers: list[tuple[Any, str]] = field(default_factory=list)


def error_text(lang: str, exc: BaseException) -> str:
    """A refusal or failure as one line for a person (core messages are English)."""
    if isinstance(exc, OutsideRoot):
        text = t(lang, "err.outside", path=exc.path, root=str(exc.root))
    elif isinstance(exc, InvalidJSON):
        text = t(lang, "err.json", path=exc.path, line=exc.line, column=exc.column, reason=exc.reason)
        text += t(lang, f"err.json.{exc.hint}") if exc.hint else ""
    elif isinstance(exc, JobRunning):
        text = t(lang, "err.busy", kind=t(lang, f"kind.{exc.job.kind}"), pid=exc.job.pid)
    elif isinstance(exc, TuneboardError):
        text = t(lang, "err.prefix", message=str(exc))
    else:
        text = t(lang, "err.prefix", message=f"{type(exc).__name__}: {exc}")
    return "❌ " + html.escape(text)


def ok_text(text: str) -> str:
    return "✅ " + html.escape(text)


def in_every_language(render: Any) -> dict[str, Any]:
    """render(lang) for each language: a message kept so that a language switch can show it again."""
    return {lang: render(lang) for lang in LANGS}


def modelscope(hub: str) -> bool:
    return hub == "modelscope"


def model_settings(ctx: Ctx, model: str, hub: str, ft: str, output: str | None, template: str, trust: bool):
    return lookup.model_settings(ctx.ws, model, ft, output or None, template, bool(trust))


def with_hub(hub: str):
    """The hub chosen in the top bar, for work done in the server process itself (chat, data check)."""
    return hubs.using(modelscope(hub))


def dataset_choices(ws: Workspace, dataset_dir: str) -> list[tuple[str, str]]:
    """Registered datasets as (label with record count, name)."""
    try:
        rows = lookup.datasets(ws, dataset_dir)
    except TuneboardError:
        return []
    return [(f"{r['name']} ({r['records'] if r['records'] is not None else '?'})", r["name"]) for r in rows]


@cache
def bundled_names() -> frozenset[str]:
    """The datasets that come with tuneboard (the demo's), as opposed to the user's own."""
    try:
        return frozenset(read_registry(bundled_data_dir()))
    except TuneboardError:
        return frozenset()


def default_pick(choices: list[tuple[str, str]], role: str) -> list[str]:
    """Pre-selected datasets: for evaluation the user's newest test split (the last `*_test` registered that
    did not come with tuneboard), else the bundled one; none for training."""
    if role != "test":
        return []
    tests = [v for _, v in choices if v.endswith("_test")]
    own = [v for v in tests if v not in bundled_names()]
    return (own[-1:] or tests[:1]) if tests else []


def refresh_pickers(ctx: Ctx, dataset_dir: str, current: list[Any]) -> list[Any]:
    """New choices for every picker; a value stays while its datasets exist, and a test picker the user has
    not set by hand moves to the default pick (a split just made, say)."""
    choices = dataset_choices(ctx.ws, dataset_dir)
    names = {v for _, v in choices}
    roles = [role for _, role in ctx.pickers]
    out = []
    for i, (role, value) in enumerate(zip(roles, current, strict=False)):
        if role == "chosen":
            out.append(value)
            continue
        if isinstance(value, str):  # a single-choice picker
            out.append(gr.update(choices=choices, value=value if value in names else None))
            continue
        keep = [v for v in (value or []) if v in names]
        by_hand = i + 1 < len(roles) and roles[i + 1] == "chosen" and bool(current[i + 1])
        if role == "test" and not by_hand:
            keep = []
        out.append(gr.update(choices=choices, value=keep or default_pick(choices, role)))
    return out


def relpath(ws: Workspace, path: str | Path) -> str:
    try:
        return ws.rel(path)
    except TuneboardError:
        return str(path)


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
