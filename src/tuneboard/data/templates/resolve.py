"""Which chat template a model uses: the one decision, made here for the CLI, the web UI, export and the API.

Data layer (templates). `template_name` decides the name from what is known without loading anything;
`load_template` binds it to a loaded tokenizer (the named template, or `auto`: the tokenizer's own Jinja).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ... import rundir
from ...errors import ConfigError
from .base import Qwen3Template, Template
from .hf_jinja import JinjaTemplate
from .named import get_template, names

# model name pattern -> template, for a model whose tokenizer is not at hand or has no chat template of its own
NAME_HINTS = (
    ("qwen3", "qwen3"),
    ("qwen", "qwen"),
    ("llama-3", "llama3"),
    ("llama3", "llama3"),
    ("glm-4", "glm4"),
    ("glm4", "glm4"),
    ("gemma", "gemma"),
    ("mistral", "mistral"),
    ("deepseek-llm", "deepseek"),
    ("deepseek-v2", "deepseek"),
)


def _template_of(saved: dict | None) -> str | None:
    """The template a saved config or the builtin model's marker names (None: none, or auto)."""
    value = (saved or {}).get("template")
    return str(value) if value and value != "auto" else None


def has_chat_template(model_dir: Path) -> bool:
    """Whether a model directory's tokenizer carries its own chat template (read from the files, no tokenizer)."""
    if (model_dir / "chat_template.jinja").is_file():
        return True
    try:
        conf = json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(conf, dict) and bool(conf.get("chat_template"))


def template_name(
    user: str | None,
    model_dir: Path | None = None,
    model_name: str = "",
    adapters: Sequence[Path] = (),
    chat_template: bool | None = None,
) -> str:
    """In order: the user's value; the template the run was trained with (saved config of the last adapter,
    or of the model directory itself: a full or freeze output); the builtin model's marker; `auto` when the
    tokenizer has a chat template of its own; a hint from the model's name; else `auto`.
    `chat_template`: whether the loaded tokenizer has one (None: read from model_dir's files, if given)."""
    if user not in (None, "", "auto"):
        return str(user)
    folders = [*reversed([Path(a) for a in adapters]), *([model_dir] if model_dir else [])]
    for folder in folders:
        saved = _template_of(rundir.saved_config(folder))
        if saved:
            return saved
    if model_dir is not None:
        marker = _template_of(rundir.read_tiny_marker(model_dir))
        if marker:
            return marker
        if chat_template is None:
            chat_template = has_chat_template(model_dir)
    if chat_template:
        return "auto"
    name = (model_name or (_dir_name(model_dir) if model_dir else "")).lower()
    return next((tpl for pattern, tpl in NAME_HINTS if pattern in name), "auto")


def _dir_name(model_dir: Path) -> str:
    """The name a directory gives its model: a hub cache snapshot (models--Org--Name/snapshots/<hash>) is
    named by its repository, not by the hash."""
    if model_dir.parent.name == "snapshots" and model_dir.parent.parent.name.startswith("models--"):
        return model_dir.parent.parent.name.removeprefix("models--").replace("--", "/")
    return model_dir.name


def load_template(
    user: str | None, tokenizer: Any, model_dir: Path, adapters: Sequence[Path] = ()
) -> Template:
    """The template for a loaded tokenizer (see template_name), its end-of-turn bound to the tokenizer's eos."""
    chat_template = getattr(tokenizer, "chat_template", None)
    name = template_name(user, model_dir, adapters=adapters, chat_template=bool(chat_template))
    bos = getattr(tokenizer, "bos_token", None)
    return resolve_template(name, chat_template, tokenizer.eos_token, bos=bos)


def resolve_template(
    name: str | None,
    chat_template: str | None,
    eos: str | None,
    *,
    bos: str | None = None,
    enable_thinking: bool | None = None,
):
    """The named template (its `{eos}` bound to `eos`), or for 'auto'/None the tokenizer's own chat template."""
    if name in (None, "", "auto"):
        if not chat_template:
            raise ConfigError(
                "template: auto needs the tokenizer's chat template, but this tokenizer has none; "
                f"set `template:` to one of {', '.join(n for n in names() if n != 'auto')}"
            )
        extra = {} if enable_thinking is None else {"enable_thinking": enable_thinking}
        return JinjaTemplate(chat_template, bos=bos, eos=eos, **extra)
    t = get_template(name).with_eos(eos)
    if enable_thinking is not None and isinstance(t, Qwen3Template):
        t = dataclasses.replace(t, enable_thinking=enable_thinking)
    return t
