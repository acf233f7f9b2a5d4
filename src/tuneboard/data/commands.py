"""The `tuneboard data` commands: identity, add, split, check, preview (the tutorial's steps 3-6).

Data layer. No torch or transformers: a tokenizer, when needed, is passed in by the caller (cli.py).
The check report and its text live in checks.py.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import DataError
from ..files import write_json_atomic
from .checks import check as check
from .checks import check_cutoff, conversations, repeats, validate
from .checks import format_check as format_check
from .checks import tools_note as tools_note
from .documents import document_ids, is_document
from .formats import SHAREGPT_TAGS, to_conversation
from .kto import encode_kto
from .pairs import encode_pairs
from .readers import read_file, read_records
from .registry import INFO_FILE, DatasetSpec, read_registry, resolve, spec_for_path, spec_from_entry
from .sniff import sniff_formatting
from .tokenize import IGNORE, encode

PLACEHOLDER = re.compile(r"\{\{(name|author)\}\}")


def template_path(file: Path) -> Path:
    return file.with_name(f"{file.stem}.template{file.suffix}")


def identity(name: str, author: str, file: Path, output: Path | None = None) -> Path:
    """Fill {{name}}/{{author}}. The placeholder version is kept as <stem>.template.json, so a second run
    (or a new name) starts again from the template instead of from already-filled text."""
    if not name.strip() or not author.strip():
        raise DataError("identity: --name and --author must not be empty")
    tpl = template_path(file)
    source = tpl if tpl.exists() else file
    records = read_file(source)
    text = json.dumps(records, ensure_ascii=False)
    if not PLACEHOLDER.search(text):
        raise DataError(f"{source}: holds no {{{{name}}}} or {{{{author}}}} placeholders to fill")
    if output is None and not tpl.exists():
        write_json_atomic(tpl, records)
    filled = json.loads(
        text.replace("{{name}}", _json_inner(name)).replace("{{author}}", _json_inner(author))
    )
    target = output or file
    write_json_atomic(target, filled)
    return target


def _json_inner(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)[1:-1]


def check_name(name: str) -> str:
    """A name `dataset:` can refer to: its lists are split on commas and each name trimmed."""
    if not name.strip() or name != name.strip() or "," in name:
        raise DataError(
            f"dataset name {name!r}: `dataset:` could never name it (names are separated by commas and "
            "trimmed); use letters, digits, '_' or '-', e.g. my_data"
        )
    return name


def _check_new(name: str, file: Path, dataset_dir: Path, info: dict, force: bool) -> Path:
    """What registering FILE as NAME needs, checked before anything is written: the path relative to dataset_dir."""
    check_name(name)
    if name in info and not force:
        raise DataError(
            f"{dataset_dir / INFO_FILE}: dataset '{name}' is already registered (use --force to replace)"
        )
    try:
        return file.resolve().relative_to(dataset_dir.resolve())
    except ValueError:
        raise DataError(
            f"{file}: is outside the dataset directory {dataset_dir}; copy it there first, or pass the file "
            "path directly as `dataset:` (no registration needed)"
        ) from None


def _problems_error(file: Path, problems: list[str]) -> DataError:
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return DataError(f"{file}: not registered; " + "; ".join(problems[:3]) + more)


def _entry(name: str, file: Path, rel: Path, dataset_dir: Path, formatting: str | None) -> dict:
    """The registry entry of a validated file: a sniffed or given format is spelled out (LLaMA-Factory reads
    an entry without sniffing or our defaults)."""
    entry: dict[str, Any] = {"file_name": rel.as_posix()}
    if formatting and formatting != "alpaca":
        entry["formatting"] = formatting
    spec = spec_from_entry(name, entry, dataset_dir, use_modelscope=False)
    records, problems = validate(spec)
    if problems:
        raise _problems_error(file, problems)
    if not records:
        raise DataError(f"{file}: no records")
    if spec.formatting != "alpaca":
        entry["formatting"] = spec.formatting
        if spec.columns["messages"] != "conversations":
            entry["columns"] = {"messages": spec.columns["messages"]}
        if spec.tags != SHAREGPT_TAGS:
            entry["tags"] = dict(spec.tags)
    return entry


def add(name: str, file: Path, dataset_dir: Path, formatting: str | None = None, force: bool = False) -> dict:
    """Register FILE as NAME in dataset_dir/dataset_info.json (validated first; other entries kept in order)."""
    dataset_dir, file = Path(dataset_dir), Path(file)
    info = read_registry(dataset_dir)
    rel = _check_new(name, file, dataset_dir, info, force)
    info[name] = _entry(name, file, rel, dataset_dir, formatting)
    write_json_atomic(dataset_dir / INFO_FILE, info)
    return info[name]


class Split(NamedTuple):
    train: Path
    test: Path
    n_train: int
    n_test: int
    repeated: list[int]  # records that occur more than once, every copy kept in the train part


def split(
    file: Path, val_size: float, seed: int = 42, force: bool = False, dataset_dir: Path | None = None
) -> Split:
    """FILE -> <stem>_train.json and <stem>_test.json; with dataset_dir, both registered under their stems in
    one registry write. Everything is checked before anything is written, and existing files or entries are
    replaced only with `force`, so a refusal leaves no half of it done.

    A record that occurs more than once (as data check counts duplicates) goes, with all its copies, to the
    train part: one copy on each side would put test answers into training and overstate the test score."""
    file = Path(file)
    out_train, out_test = (file.with_name(f"{file.stem}_{part}.json") for part in ("train", "test"))
    existing = [str(p) for p in (out_train, out_test) if p.exists()]
    if existing and not force:
        raise DataError(f"{' and '.join(existing)}: already there; use --force to replace")
    records = read_file(file)
    if not records:
        raise DataError(f"{file}: no records to split")
    n_val = int(val_size) if val_size >= 1 else max(1, round(len(records) * val_size))
    if not 0 < n_val < len(records):
        raise DataError(f"{file}: --val-size {val_size} gives {n_val} test records out of {len(records)}")
    info, rels = None, []
    if dataset_dir is not None:
        dataset_dir = Path(dataset_dir)
        info = read_registry(dataset_dir)
        rels = [_check_new(p.stem, p, dataset_dir, info, force) for p in (out_train, out_test)]
        _, problems = validate(spec_for_path(file))
        if problems:
            raise _problems_error(file, problems)
    later = repeats(records, conversations(records, spec_for_path(file)))
    repeated = sorted(set(later) | set(later.values()))
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    kept = set(repeated)
    once = [i for i in order if i not in kept]
    if len(once) < n_val:
        raise DataError(
            f"{file}: a test part of {n_val} records needs {n_val} records that occur once, and only "
            f"{len(once)} do ({len(repeated)} are duplicates, which stay in the train part); remove the "
            "duplicates (data check names them) or ask for a smaller test part"
        )
    test_idx = set(once[:n_val])
    train = [r for i, r in enumerate(records) if i not in test_idx]
    test = [records[i] for i in sorted(test_idx)]
    write_json_atomic(out_train, train)
    write_json_atomic(out_test, test)
    if info is not None and dataset_dir is not None:
        for p, rel in zip((out_train, out_test), rels, strict=True):
            info[p.stem] = _entry(p.stem, p, rel, dataset_dir, None)
        write_json_atomic(dataset_dir / INFO_FILE, info)
    return Split(out_train, out_test, len(train), len(test), repeated)


def format_split(result: Split) -> str:
    text = f"wrote {result.train} ({result.n_train} records) and {result.test} ({result.n_test} records)"
    if result.repeated:
        shown = ", ".join(map(str, result.repeated[:20])) + (", ..." if len(result.repeated) > 20 else "")
        text += (
            f"\n{len(result.repeated)} records occur more than once (records {shown}): every copy is in the "
            "train part, so no test record is also trained on"
        )
    return text


def resolve_one(name: str, dataset_dir: Path) -> DatasetSpec:
    path = Path(name)
    if path.exists() and path.is_file():
        return spec_for_path(path)
    return resolve([name], dataset_dir)[0]


def templates_table() -> str:
    """The named templates with what they are checked against and whether they render tools."""
    from .templates.named import TEMPLATES

    lines = ["template        tools  notes"]
    for name in sorted(TEMPLATES):
        t = TEMPLATES[name]
        lines.append(f"{name:<15} {'yes' if t.renders_tools else '-':<6} {t.notes}")
    lines.append(
        "auto            *      the tokenizer's own chat_template (*: tools when that template has them)"
    )
    return "\n".join(lines)


def preview(spec: DatasetSpec, tokenizer: Any, template: Any, n: int = 2, cutoff_len: int = 2048) -> str:
    """The first records as the model sees them; trained text between [[ and ]] (from the real labels)."""
    check_cutoff(cutoff_len)
    records = read_records(spec)[:n]
    spec = sniff_formatting(spec, records)
    out = []
    for i, rec in enumerate(records):
        conv = to_conversation(
            rec, spec.formatting, spec.columns, spec.tags, f"{spec.path}: record {i}", spec.ranking
        )
        if conv.rejected is not None:
            out.append(_preview_pair(i, conv, tokenizer, template, cutoff_len))
            continue
        if is_document(conv):  # stage pt: no template; training cuts blocks of cutoff_len across documents
            ids = document_ids([conv], tokenizer)[0]
            out.append(
                f"--- record {i}: document, {len(ids)} tokens, all trained (stage pt)\n"
                + _marked(tokenizer, ids, ids)
            )
            continue
        kind = "" if conv.kto_tag is None else f"{'un' * (not conv.kto_tag)}desirable reply (kto_tag), "
        if conv.kto_tag is None:
            enc, _ = encode([conv], template, tokenizer, cutoff_len=cutoff_len)
        else:  # as stage kto trains it: the final reply alone
            enc, _ = encode_kto([conv], template, tokenizer, cutoff_len)
        if not enc["input_ids"]:
            out.append(f"--- record {i}: dropped (no trainable token within cutoff_len={cutoff_len})")
            continue
        ids, labels = enc["input_ids"][0], enc["labels"][0]
        n_trained = sum(1 for lab in labels if lab != IGNORE)
        out.append(
            f"--- record {i}: {kind}{len(ids)} tokens, {n_trained} trained (between [[ and ]])\n"
            + _marked(tokenizer, ids, labels)
        )
    return "\n".join(out)


def _marked(tokenizer: Any, ids: list[int], labels: list[int]) -> str:
    """The decoded tokens, trained runs between [[ and ]] (runs decoded whole: multi-byte characters)."""
    text, start = [], 0
    for k in range(1, len(ids) + 1):
        if k == len(ids) or (labels[k] != IGNORE) != (labels[start] != IGNORE):
            piece = tokenizer.decode(ids[start:k])
            text.append(f"[[{piece}]]" if labels[start] != IGNORE else piece)
            start = k
    return "".join(text)


def _preview_pair(i: int, conv: Any, tokenizer: Any, template: Any, cutoff_len: int) -> str:
    """A preference pair: the shared prompt and both replies, as stages dpo and rm train them."""
    enc, _ = encode_pairs([conv], template, tokenizer, cutoff_len)
    if not enc["chosen_input_ids"]:
        return f"--- record {i}: dropped (a reply lost every token to cutoff_len={cutoff_len})"
    lines = [f"--- record {i}: preference pair (trained reply between [[ and ]])"]
    for side in ("chosen", "rejected"):
        ids, labels = enc[f"{side}_input_ids"][0], enc[f"{side}_labels"][0]
        n = sum(1 for lab in labels if lab != IGNORE)
        lines.append(f"  {side}: {len(ids)} tokens, {n} trained\n" + _marked(tokenizer, ids, labels))
    return "\n".join(lines)
