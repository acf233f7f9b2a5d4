"""`tokenized_path` (LLaMA-Factory's key): the tokenized training and evaluation sets kept in a directory the
user names. The first run writes it (train.npz, eval.npz and a manifest of what they were made from); a later
run with the same data and settings reads it instead of tokenizing. A directory made from other data or
settings, or not made by tuneboard, is a clear error, never silently trained on.

Data layer; pipeline.prepare_datasets reads and writes through it (the only module that knows these names).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import DataError
from .cache import CACHE_VERSION

MANIFEST = "tuneboard_tokenized.json"
PARTS = ("train", "eval")
READABLE = ("stage", "template", "cutoff_len", "train_on_prompt", "mask_history")  # shown when they differ


def manifest(cfg: Any, template_name: str, fingerprints: dict[str, str | None]) -> dict[str, Any]:
    """What a tokenized directory was made from: the readable settings and the fingerprints (settings +
    tokenizer, and each part's records)."""
    settings = {key: getattr(cfg, key) for key in READABLE if key != "template"}
    return {"version": CACHE_VERSION, "template": template_name, **settings, "fingerprints": fingerprints}


def _path(cfg: Any) -> Path:
    return Path(cfg.tokenized_path).expanduser()


def read(cfg: Any, expected: dict[str, Any], load: Callable[[Path], Any]) -> dict[str, Any] | None:
    """The stored parts ({'train': set, 'eval': set or None}) when tokenized_path holds what `expected`
    describes; None when it does not exist yet, or differs and overwrite_cache asks to tokenize again."""
    path = _path(cfg)
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return None
    where = f"tokenized_path {path}"
    if not (path / MANIFEST).is_file():
        made_by = " (it looks like LLaMA-Factory's, a datasets directory)" if _is_datasets_dir(path) else ""
        raise DataError(
            f"{where}: not a tokenized set written by tuneboard{made_by}; point tokenized_path at a new "
            "directory to tokenize into it"
        )
    try:
        stored = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{where}: {MANIFEST} is unreadable ({exc}); delete the directory") from None
    differs = _differences(stored, expected)
    if differs and cfg.overwrite_cache:
        return None
    if differs:
        raise DataError(
            f"{where}: tokenized from other {differs}; delete it or set overwrite_cache: true to tokenize again"
        )
    parts: dict[str, Any] = {}
    for part in PARTS:
        file = path / f"{part}.npz"
        if expected["fingerprints"][part] is None:
            parts[part] = None
            continue
        try:
            parts[part] = load(file)
        except (OSError, ValueError, KeyError) as exc:
            raise DataError(
                f"{where}: {file.name} is missing or damaged ({exc}); delete the directory"
            ) from None
    return parts


def write(cfg: Any, info: dict[str, Any], parts: dict[str, Any]) -> Path:
    """Save the parts and then the manifest (last: a directory without it was not completely written)."""
    path = _path(cfg)
    path.mkdir(parents=True, exist_ok=True)
    (path / MANIFEST).unlink(missing_ok=True)
    for part in PARTS:
        if parts.get(part) is not None:
            parts[part].save(path / f"{part}.npz")
        else:
            (path / f"{part}.npz").unlink(missing_ok=True)
    tmp = path / f".{MANIFEST}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(info, indent=1), encoding="utf-8")
    os.replace(tmp, path / MANIFEST)
    return path


def _differences(stored: dict[str, Any], expected: dict[str, Any]) -> str:
    if stored.get("version") != expected["version"]:
        return "rules (an older tuneboard)"
    named = [
        f"{key} ({stored.get(key)!r}, now {expected[key]!r})"
        for key in READABLE
        if stored.get(key) != expected[key]
    ]
    if named:
        return "settings: " + ", ".join(named)
    old, new = stored.get("fingerprints") or {}, expected["fingerprints"]
    if old.get("settings") != new["settings"]:
        return "tokenizer or template text"
    changed = [part for part in PARTS if old.get(part) != new[part]]
    if changed:
        words = {"train": "training", "eval": "evaluation"}
        return "records: the " + " and ".join(words[p] for p in changed) + " data changed since"
    return ""


def _is_datasets_dir(path: Path) -> bool:
    return (path / "dataset_dict.json").exists() or (path / "state.json").exists()
