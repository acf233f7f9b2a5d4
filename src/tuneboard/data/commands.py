"""The `tuneboard data` commands: identity, add, split, check, preview (the tutorial's steps 3-6).

Data layer. No torch or transformers: a tokenizer, when needed, is passed in by the caller (cli.py).
"""

from __future__ import annotations

import json
import random
import re
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..files import write_json_atomic
from . import fastbpe
from .documents import document_ids, is_document
from .formats import SHAREGPT_TAGS, mapped_fields, to_conversation
from .kto import encode_kto, tag_counts
from .pairs import encode_pairs
from .readers import read_file, read_records
from .registry import INFO_FILE, DatasetSpec, read_registry, resolve, spec_for_path, spec_from_entry
from .sniff import sniff_formatting
from .templates.named import tool_templates
from .tokenize import IGNORE, encode, keep_chars_for

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


def validate(spec: DatasetSpec) -> tuple[list[Any], list[str]]:
    """All records and every per-record problem (not just the first)."""
    records = read_records(spec)
    spec = sniff_formatting(spec, records)
    problems = []
    for i, rec in enumerate(records):
        try:
            to_conversation(rec, spec.formatting, spec.columns, spec.tags, f"record {i}", spec.ranking)
        except DataError as exc:
            problems.append(str(exc))
    return records, problems


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


def split(
    file: Path, val_size: float, seed: int = 42, force: bool = False, dataset_dir: Path | None = None
) -> tuple[Path, Path, int, int]:
    """FILE -> <stem>_train.json and <stem>_test.json; with dataset_dir, both registered under their stems in
    one registry write. Everything is checked before anything is written, and existing files or entries are
    replaced only with `force`, so a refusal leaves no half of it done."""
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
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    test_idx = set(order[:n_val])
    train = [r for i, r in enumerate(records) if i not in test_idx]
    test = [records[i] for i in sorted(test_idx)]
    write_json_atomic(out_train, train)
    write_json_atomic(out_test, test)
    if info is not None and dataset_dir is not None:
        for p, rel in zip((out_train, out_test), rels, strict=True):
            info[p.stem] = _entry(p.stem, p, rel, dataset_dir, None)
        write_json_atomic(dataset_dir / INFO_FILE, info)
    return out_train, out_test, len(train), len(test)


def resolve_one(name: str, dataset_dir: Path) -> DatasetSpec:
    path = Path(name)
    if path.exists() and path.is_file():
        return spec_for_path(path)
    return resolve([name], dataset_dir)[0]


def check(spec: DatasetSpec, tokenizer: Any = None, template: Any = None, cutoff_len: int = 2048) -> dict:
    """A report of a dataset: problems by record, counts, lengths, duplicates, empty outputs, unmapped fields."""
    check_cutoff(cutoff_len)
    records, problems = validate(spec)
    spec = sniff_formatting(spec, records)
    convs = []
    for i, rec in enumerate(records):
        try:
            convs.append(
                to_conversation(rec, spec.formatting, spec.columns, spec.tags, f"record {i}", spec.ranking)
            )
        except DataError:
            pass
    mapped = mapped_fields(spec.formatting, spec.columns, spec.tags)
    unmapped: Counter[str] = Counter()
    for rec in records:
        if isinstance(rec, dict):
            unmapped.update(k for k, v in rec.items() if k not in mapped and v not in (None, "", [], {}))
    keys = [
        json.dumps([c.system, [(m.role, m.content) for m in c.messages]], ensure_ascii=False) for c in convs
    ]
    dupes = sum(n - 1 for n in Counter(keys).values() if n > 1)
    empty = sum(1 for c in convs if any(m.role == "assistant" and not m.content.strip() for m in c.messages))
    report: dict[str, Any] = {
        "dataset": spec.name,
        "formatting": spec.formatting,
        "records": len(records),
        "valid": len(convs),
        "problems": problems,
        "duplicates": dupes,
        "empty_outputs": empty,
        "with_system": sum(1 for c in convs if c.system),
        "multi_turn": sum(1 for c in convs if len(c.messages) > 2),
        "with_tools": sum(1 for c in convs if c.tools),
        "pairs": sum(1 for c in convs if c.rejected is not None),
        "kto": dict(zip(("desirable", "undesirable"), tag_counts(convs), strict=True)),
        "documents": sum(1 for c in convs if is_document(c)),
        "tools_rendered": None if template is None else template.renders_tools,
        "unmapped_fields": dict(unmapped),
        "numbers_as_text": dict(_numbers(records, spec)),
    }
    if tokenizer is not None and template is not None and convs:
        fastbpe.build_if_worth(tokenizer, convs)
        # untruncated lengths; a record far longer than cutoff_len is measured on what training could keep
        keep = keep_chars_for(cutoff_len)
        if report["documents"] == len(convs):  # pre-training text: no template, every token trained
            enc, stats = {"input_ids": document_ids(convs, tokenizer)}, None
        else:
            enc, stats = encode(convs, template, tokenizer, cutoff_len=10**9, keep_chars=keep)
        lengths = sorted(len(x) for x in enc["input_ids"])
        q = statistics.quantiles(lengths, n=10) if len(lengths) > 1 else [lengths[0]] * 9
        report["tokens"] = {
            "p50": int(statistics.median(lengths)),
            "p90": int(q[8]),
            "max": lengths[-1],
            "over_cutoff": sum(1 for n in lengths if n > cutoff_len),
            "cutoff_len": cutoff_len,
            "cut": stats.shortened if stats else 0,
            "cut_chars": keep,
        }
    return report


def check_cutoff(cutoff_len: int) -> None:
    if cutoff_len <= 0:
        raise DataError(f"--cutoff-len must be greater than 0, got {cutoff_len}")


def _numbers(records: list[Any], spec: DatasetSpec) -> Counter[str]:
    """Alpaca text fields holding a number, which is trained as its text (42.0 as '42.0'): worth a note."""
    if spec.formatting != "alpaca":
        return Counter()  # message contents must be text there (a problem otherwise)
    keys = {spec.columns.get(k) for k in ("prompt", "query", "response", "system")} - {None, ""}
    found: Counter[str] = Counter()
    for rec in records:
        if isinstance(rec, dict):
            found.update(k for k in keys if type(rec.get(k)) in (int, float))
    return found


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


def tools_note(report: dict) -> str:
    rendered = report.get("tools_rendered")
    if rendered is None:
        return f"templates {', '.join(tool_templates())} (and auto, when the model's own template has tools) render them"
    if rendered:
        return "the template writes them into the prompt"
    return f"this template does NOT render them (trained without them); {', '.join(tool_templates())} do"


def format_check(report: dict) -> str:
    lines = [
        f"dataset {report['dataset']} ({report['formatting']}): {report['records']} records, "
        f"{report['valid']} valid, {len(report['problems'])} with problems",
        f"  with system prompt: {report['with_system']}, multi-turn: {report['multi_turn']}, "
        f"duplicates: {report['duplicates']}, empty outputs: {report['empty_outputs']}",
    ]
    if report.get("pairs"):
        lines.append(
            f"  preference pairs (chosen + rejected reply): {report['pairs']}; trained with stage: dpo or rm"
        )
    if any(report.get("kto", {}).values()):
        lines.append(
            f"  KTO replies (kto_tag): {report['kto']['desirable']} desirable, {report['kto']['undesirable']} "
            "undesirable; trained with stage: kto"
        )
    if report.get("documents"):
        lines.append(
            f"  pre-training text (no reply): {report['documents']} documents; trained with stage: pt, "
            "cut into blocks of cutoff_len"
        )
    if "tokens" in report:
        t = report["tokens"]
        lines.append(
            f"  tokens p50 {t['p50']}, p90 {t['p90']}, max {t['max']}; {t['over_cutoff']} over cutoff_len={t['cutoff_len']}"
        )
        if t.get("cut"):
            lines.append(
                f"  {t['cut']} record{'s' * (t['cut'] > 1)} cut before tokenizing: longer than {t['cut_chars']:,} "
                "characters around the reply, measured on those (training keeps cutoff_len tokens of them)"
            )
    if report["unmapped_fields"]:
        fields = ", ".join(f"{k} ({n} records)" for k, n in report["unmapped_fields"].items())
        lines.append(f"  fields no column maps (NOT trained on): {fields}")
    if report.get("numbers_as_text"):
        fields = ", ".join(f"{k} ({n} records)" for k, n in report["numbers_as_text"].items())
        lines.append(f"  numbers read as text (trained as written, e.g. 42.0 as '42.0'): {fields}")
    if report.get("with_tools"):
        lines.append(
            f"  with tools (function definitions): {report['with_tools']} records; {tools_note(report)}"
        )
    for p in report["problems"][:20]:
        lines.append(f"  problem: {p}")
    if len(report["problems"]) > 20:
        lines.append(f"  ... and {len(report['problems']) - 20} more problems")
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
