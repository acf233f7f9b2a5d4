"""`dataset_info.json` (LLaMA-Factory's schema) -> `DatasetSpec`; a dataset name may also be a file path.

Data layer, step 1 of the flow (*registry* -> read -> to Conversation -> template -> tokens).
"""

from __future__ import annotations

import difflib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import hub
from ..errors import DataError
from .formats import FORMATTINGS, default_tags, effective_columns

INFO_FILE = "dataset_info.json"
ENTRY_KEYS = {
    "file_name",
    "hf_hub_url",
    "ms_hub_url",
    "om_hub_url",
    "script_url",
    "cloud_file_name",
    "subset",
    "split",
    "folder",
    "num_samples",
    "formatting",
    "ranking",
    "columns",
    "tags",
}
COLUMN_KEYS = {
    "prompt",
    "query",
    "response",
    "history",
    "messages",
    "system",
    "tools",
    "images",
    "videos",
    "audios",
    "chosen",
    "rejected",
    "kto_tag",
}
MEDIA_COLUMNS = {"images", "videos", "audios"}
TAG_KEYS = set(default_tags("sharegpt"))
DATA_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet")
# a hub dataset id: 'org/name' or 'name' (Hugging Face and ModelScope), never a path on this machine
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


@dataclass
class DatasetSpec:
    name: str
    load_from: str  # "file" | "hf_hub" | "ms_hub"
    path: str  # local file or folder, or hub id
    formatting: str = "alpaca"
    columns: dict[str, str] = field(default_factory=dict)  # effective: entry's map over the standard names
    tags: dict[str, str] = field(default_factory=dict)
    declared_columns: dict[str, str] | None = None
    ranking: bool = False  # preference pairs: `chosen` / `rejected` replies (stage dpo or rm)
    subset: str | None = None
    split: str = "train"
    folder: str | None = None
    num_samples: int | None = None


class InvalidJSON(DataError):
    """A file that is not JSON, with where and why as fields (the web UI words them in its language)."""

    def __init__(self, path: Path | str, line: int, column: int, reason: str, hint: str = "") -> None:
        self.path, self.line, self.column, self.reason, self.hint = str(path), line, column, reason, hint
        notes = {"comment": " (JSON does not allow comments: remove the // ... part)",
                 "comma": " (a trailing comma or a missing value?)"}  # fmt: skip
        super().__init__(
            f"{path}: invalid JSON at line {line}, column {column}: {reason}{notes.get(hint, '')}"
        )

    def __reduce__(self):  # copied and pickled by its fields (gradio copies a session's state)
        return type(self), (self.path, self.line, self.column, self.reason, self.hint)


def json_error(path: Path | str, text: str, exc: json.JSONDecodeError) -> DataError:
    """Name line and column; point out the `//` comments tutorials show, which JSON does not allow."""
    line = text.splitlines()[exc.lineno - 1] if exc.lineno - 1 < len(text.splitlines()) else ""
    hint = ""
    if "//" in line or "/*" in line:
        hint = "comment"
    elif exc.msg.startswith("Expecting property name") or exc.msg.startswith("Expecting value"):
        hint = "comma"
    return InvalidJSON(path, exc.lineno, exc.colno, exc.msg, hint)


def read_registry(dataset_dir: str | Path) -> dict[str, dict[str, Any]]:
    path = Path(dataset_dir) / INFO_FILE
    if not path.exists():
        return {}
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a JSON file")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark is accepted, as in data files
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (invalid byte at offset {exc.start})") from None
    try:
        info = json.loads(text)
    except json.JSONDecodeError as exc:
        raise json_error(path, text, exc) from None
    except (ValueError, RecursionError) as exc:  # a number over 4300 digits, nesting too deep
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc).split(";")[0]
        raise DataError(f"{path}: cannot read the JSON: {reason}") from None
    if not isinstance(info, dict):
        raise DataError(
            f"{path}: expected an object mapping dataset names to entries, got {type(info).__name__}"
        )
    return info


def _check_map(where: str, value: Any, allowed: set[str], what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DataError(f"{where}: '{what}' must be an object, got {type(value).__name__}")
    for key, val in value.items():
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise DataError(f"{where}: unknown key '{what}.{key}'{hint}")
        if not isinstance(val, str):
            raise DataError(f"{where}: '{what}.{key}' must be a string, got {type(val).__name__}")
    return dict(value)


def _inside(dataset_dir: Path, file_name: str, where: str) -> Path:
    path = (dataset_dir / file_name).resolve()
    root = dataset_dir.resolve()
    if os.path.isabs(file_name) or (path != root and root not in path.parents):
        raise DataError(
            f"{where}: 'file_name' {file_name!r} points outside the dataset directory {dataset_dir}; "
            "move the file into it, or pass the file path itself as `dataset`"
        )
    return dataset_dir / file_name


def _hub_id(entry: dict[str, Any], key: str, where: str) -> str | None:
    """The entry's hub id under `key`, refused when it could be read as a local path (an uploaded registry
    must not make Preview or a job read a directory outside dataset_dir)."""
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not HUB_ID.fullmatch(value) or ".." in value:
        raise DataError(
            f"{where}: '{key}' {value!r} is not a hub dataset id ('organisation/name' or 'name'); "
            "local data goes under 'file_name', inside the dataset directory"
        )
    return value


def spec_from_entry(name: str, entry: Any, dataset_dir: Path, use_modelscope: bool) -> DatasetSpec:
    where = f"{dataset_dir / INFO_FILE}: entry '{name}'"
    if not isinstance(entry, dict):
        raise DataError(f"{where}: expected an object, got {type(entry).__name__}")
    for key in entry:
        if key not in ENTRY_KEYS:
            close = difflib.get_close_matches(key, sorted(ENTRY_KEYS), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise DataError(f"{where}: unknown key '{key}'{hint}")
    formatting = entry.get("formatting", "alpaca")
    if formatting not in FORMATTINGS:
        raise DataError(f"{where}: 'formatting' is {formatting!r}; expected one of {', '.join(FORMATTINGS)}")
    ranking = entry.get("ranking", False)
    if not isinstance(ranking, bool):
        raise DataError(f"{where}: 'ranking' must be true or false, got {ranking!r}")
    declared = _check_map(where, entry.get("columns"), COLUMN_KEYS, "columns")
    media = sorted(set(declared) & MEDIA_COLUMNS)
    if media:
        raise DataError(
            f"{where}: columns {', '.join(media)} hold images/videos/audio; multimodal models are not "
            "supported yet (tuneboard trains text-only models)"
        )
    if ranking and "kto_tag" in declared:
        raise DataError(
            f"{where}: 'ranking' (chosen/rejected pairs, stage dpo or rm) and a 'kto_tag' column (replies tagged "
            "desirable or not, stage kto) cannot be combined; register the two kinds of data apart"
        )
    columns = effective_columns(formatting, declared)
    if ranking:
        columns = {"chosen": "chosen", "rejected": "rejected", **columns}
    tags = default_tags(formatting)
    tags.update(_check_map(where, entry.get("tags"), TAG_KEYS, "tags"))
    num = entry.get("num_samples")
    if num is not None and (not isinstance(num, int) or num <= 0):
        raise DataError(f"{where}: 'num_samples' must be a positive integer, got {num!r}")
    common = dict(
        formatting=formatting,
        columns=columns,
        tags=tags,
        ranking=ranking,
        declared_columns=declared or None,
        subset=entry.get("subset"),
        split=entry.get("split", "train"),
        folder=entry.get("folder"),
        num_samples=num,
    )
    hf, ms = _hub_id(entry, "hf_hub_url", where), _hub_id(entry, "ms_hub_url", where)
    if ms and (use_modelscope or not hf):
        return DatasetSpec(name, "ms_hub", ms, **common)
    if hf:
        return DatasetSpec(name, "hf_hub", hf, **common)
    if "file_name" in entry:
        file_name = entry["file_name"]
        if not isinstance(file_name, str) or not file_name:
            raise DataError(f"{where}: 'file_name' must be a non-empty string")
        return DatasetSpec(name, "file", str(_inside(dataset_dir, file_name, where)), **common)
    raise DataError(f"{where}: needs 'file_name', 'hf_hub_url' or 'ms_hub_url'")


def spec_for_path(path: Path, formatting: str | None = None) -> DatasetSpec:
    """A data file given directly as the dataset name: no registry entry needed; format is sniffed later."""
    fmt = formatting or "alpaca"
    return DatasetSpec(path.stem, "file", str(path), fmt, effective_columns(fmt, None), default_tags(fmt))


def looks_like_path(name: str) -> bool:
    return name.endswith((*DATA_SUFFIXES, ".txt")) or "/" in name or os.sep in name


def resolve(
    names: list[str], dataset_dir: str | Path, use_modelscope: bool | None = None
) -> list[DatasetSpec]:
    """Names from `dataset:` -> specs; unknown names list the close ones."""
    dataset_dir = Path(dataset_dir)
    if use_modelscope is None:
        use_modelscope = hub.use_modelscope()
    info = read_registry(dataset_dir)
    specs = []
    for name in names:
        if name in info:
            specs.append(spec_from_entry(name, info[name], dataset_dir, use_modelscope))
            continue
        if looks_like_path(name):
            path = Path(name)
            if not path.exists() and (dataset_dir / name).exists():
                path = dataset_dir / name
            if not path.exists():
                raise DataError(f"{name}: data file not found")
            specs.append(spec_for_path(path))
            continue
        close = difflib.get_close_matches(name, list(info), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        where = dataset_dir / INFO_FILE
        if not info:
            raise DataError(f"dataset '{name}' is not defined: {where} is missing or empty")
        raise DataError(f"dataset '{name}' is not defined in {where}{hint}")
    return specs
