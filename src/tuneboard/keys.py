"""Config keys as people write them: the field maker that gives each key of config.Config its group, help
text and choices, LLaMA-Factory's other names for keys, reading keys and values from a YAML file or `key=value`
strings (plain data; config.py types and validates it), and the `--help-keys` listing.

Lowest layer, beside config.py (which imports this; nothing here imports it): no torch.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import field, fields
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

GROUPS = ("model", "method", "data", "output", "train", "eval", "generation", "api", "export")

# LLaMA-Factory keys that tuneboard accepts and ignores, with the reason shown to the user
IGNORED_KEYS = {
    "ddp_find_unused_parameters": "handled automatically",
    "upcast_layernorm": "not needed",
    "use_fast_tokenizer": "tuneboard always uses the fast tokenizer",
    "disable_gradient_checkpointing": "use gradient_checkpointing",
    "include_num_input_tokens_seen": "always logged",
    "streaming": "not supported; datasets are read fully",
    "neat_packing": "packing always isolates samples",
    "enable_liger_kernel": "not used",
    "use_unsloth": "not used",
    "export_hub_model_id": "push to the hub yourself",
    "run_name": "not used",
}

# pure_bf16 (LLaMA-Factory: bf16 weights, no fp32 master copy) is trained as bf16 mixed precision here
KEY_ALIASES = {"evaluation_strategy": "eval_strategy", "lora_r": "lora_rank", "pure_bf16": "bf16"}


def group(name: str) -> Callable[..., Any]:
    """The field maker of one group: `key(default, help, choices)` declares a YAML key once, with a one-line
    help text and, where the value is one of a fixed set, the choices that validation enforces."""
    assert name in GROUPS, name

    def key(default: Any, help: str, choices: tuple[str, ...] = ()) -> Any:
        return field(default=default, metadata={"group": name, "help": help, "choices": choices})

    return key


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader (nothing but plain data), except that only true and false are booleans, as in YAML
    1.2: yes, no, on, off stay the words typed, so `save_strategy: no` is the choice no; a true/false key
    still reads them as booleans (config.py's coercion)."""


_BOOL = "tag:yaml.org,2002:bool"
_Loader.yaml_implicit_resolvers = {
    first: [r for r in resolvers if r[0] != _BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`key=value` strings from the command line; values are read as YAML scalars (so 1e-4, true, null work)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"command line: '{item}' is not key=value")
        key, _, raw = item.partition("=")
        key = key.strip().lstrip("-").replace("-", "_")
        try:
            out[key] = yaml.load(raw, Loader=_Loader)  # a SafeLoader if raw.strip() else None
        except yaml.YAMLError:
            out[key] = raw
        if isinstance(out[key], dict):  # `default_system=Note: be brief` is text, not a mapping
            out[key] = raw
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, expected a YAML config file")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # a SafeLoader
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        pos = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: invalid YAML{pos}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected a mapping of key: value at the top level, got {type(data).__name__}"
        )
    return data


def _yaml_word(value: Any) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def listing(config_cls: type, keyword: str = "") -> str:
    """Every key of `config_cls` by group: name, type, default, choices and help; with a keyword, only the
    keys whose name, group, help or choices contain it. Empty when none does."""
    word = keyword.strip().lower()
    out: list[str] = []
    keys = [f for f in fields(config_cls) if not f.metadata.get("internal")]
    for name in GROUPS:
        lines = []
        for f in keys:
            meta = f.metadata
            text = " ".join([f.name, name, meta["help"], *meta["choices"]]).lower()
            if meta["group"] != name or word not in text:
                continue
            head = f"  {f.name}: {f.type} = {_yaml_word(f.default)}"
            if meta["choices"]:
                head += f"  (one of {', '.join(meta['choices'])})"
            lines += [head, f"      {meta['help']}"]
        if lines:
            out += [f"{name}:", *lines, ""]
    return "\n".join(out).rstrip("\n")
