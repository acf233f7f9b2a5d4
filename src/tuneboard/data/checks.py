"""`tuneboard data check`: a dataset's report (problems, duplicates and empty replies by record, counts, token
lengths) and its text; also which records repeat, which `data split` keeps out of the test part.

Data layer, beside commands.py (which calls it). No torch: a tokenizer, when needed, is passed in.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from typing import Any

from ..errors import DataError
from . import fastbpe
from .documents import document_ids, is_document
from .formats import Conversation, mapped_fields, to_conversation
from .kto import tag_counts
from .readers import read_records
from .registry import DatasetSpec
from .sniff import sniff_formatting
from .templates.named import tool_templates
from .tokenize import encode, keep_chars_for

EXCERPT = 40  # characters of a record shown where a report names it
LISTED = 20  # records named per kind in the text report


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


def conversations(records: list[Any], spec: DatasetSpec) -> list[Conversation | None]:
    """Each record as a Conversation, None where it has a problem (validate names it)."""
    spec = sniff_formatting(spec, records)
    out: list[Conversation | None] = []
    for i, rec in enumerate(records):
        try:
            out.append(
                to_conversation(rec, spec.formatting, spec.columns, spec.tags, f"record {i}", spec.ranking)
            )
        except DataError:
            out.append(None)
    return out


def _key(conv: Conversation | None, record: Any) -> str:
    """What makes two records the same: what the model sees (fields no column maps do not count)."""
    if conv is None:
        return "raw " + json.dumps(record, ensure_ascii=False, sort_keys=True, default=str)
    return json.dumps([conv.system, [(m.role, m.content) for m in conv.messages]], ensure_ascii=False)


def repeats(records: list[Any], convs: list[Conversation | None]) -> dict[int, int]:
    """Each record that repeats an earlier one -> the index of its first occurrence."""
    first: dict[str, int] = {}
    out = {}
    for i, (rec, conv) in enumerate(zip(records, convs, strict=True)):
        key = _key(conv, rec)
        if key in first:
            out[i] = first[key]
        else:
            first[key] = i
    return out


def excerpt(conv: Conversation | None, record: Any = None) -> str:
    """The start of a record's first message (its prompt), on one line."""
    if conv is not None and conv.messages:
        text = conv.messages[0].content
    else:
        text = json.dumps(record, ensure_ascii=False, default=str)
    text = " ".join(str(text).split())
    return text if len(text) <= EXCERPT else text[: EXCERPT - 1] + "…"


def _empty_reply(conv: Conversation) -> bool:
    return any(m.role == "assistant" and not m.content.strip() for m in conv.messages)


def check(spec: DatasetSpec, tokenizer: Any = None, template: Any = None, cutoff_len: int = 2048) -> dict:
    """A report of a dataset: problems by record, counts, lengths, duplicates and empty replies (each named by
    record: index and the start of its prompt), unmapped fields."""
    check_cutoff(cutoff_len)
    records, problems = validate(spec)
    spec = sniff_formatting(spec, records)
    each = conversations(records, spec)
    convs = [c for c in each if c is not None]
    mapped = mapped_fields(spec.formatting, spec.columns, spec.tags)
    unmapped: Counter[str] = Counter()
    for rec in records:
        if isinstance(rec, dict):
            unmapped.update(k for k, v in rec.items() if k not in mapped and v not in (None, "", [], {}))
    dupes = [
        {"record": i, "first": j, "excerpt": excerpt(each[i])}
        for i, j in repeats(records, each).items()
        if each[i] is not None
    ]
    empty = [{"record": i, "excerpt": excerpt(c)} for i, c in enumerate(each) if c and _empty_reply(c)]
    report: dict[str, Any] = {
        "dataset": spec.name,
        "formatting": spec.formatting,
        "records": len(records),
        "valid": len(convs),
        "problems": problems,
        "duplicates": len(dupes),
        "duplicate_records": dupes,
        "empty_outputs": len(empty),
        "empty_records": empty,
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
        report["tokens"] = _token_lengths(convs, tokenizer, template, cutoff_len, report["documents"])
    return report


def _token_lengths(
    convs: list[Conversation], tokenizer: Any, template: Any, cutoff_len: int, docs: int
) -> dict:
    fastbpe.build_if_worth(tokenizer, convs)
    # untruncated lengths; a record far longer than cutoff_len is measured on what training could keep
    keep = keep_chars_for(cutoff_len)
    if docs == len(convs):  # pre-training text: no template, every token trained
        enc, stats = {"input_ids": document_ids(convs, tokenizer)}, None
    else:
        enc, stats = encode(convs, template, tokenizer, cutoff_len=10**9, keep_chars=keep)
    lengths = sorted(len(x) for x in enc["input_ids"])
    q = statistics.quantiles(lengths, n=10) if len(lengths) > 1 else [lengths[0]] * 9
    return {
        "p50": int(statistics.median(lengths)),
        "p90": int(q[8]),
        "max": lengths[-1],
        "over_cutoff": sum(1 for n in lengths if n > cutoff_len),
        "cutoff_len": cutoff_len,
        "cut": stats.shortened if stats else 0,
        "cut_chars": keep,
    }


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


def tools_note(report: dict) -> str:
    rendered = report.get("tools_rendered")
    if rendered is None:
        return f"templates {', '.join(tool_templates())} (and auto, when the model's own template has tools) render them"
    if rendered:
        return "the template writes them into the prompt"
    return f"this template does NOT render them (trained without them); {', '.join(tool_templates())} do"


def named_records(report: dict) -> list[str]:
    """The duplicates and empty replies, one line each: the record, and what it repeats."""
    lines = [
        f"duplicate: record {d['record']} repeats record {d['first']} (“{d['excerpt']}”)"
        for d in report.get("duplicate_records", [])[:LISTED]
    ]
    if report.get("duplicates", 0) > LISTED:
        lines.append(f"... and {report['duplicates'] - LISTED} more duplicates")
    lines += [
        f"empty reply: record {e['record']} (“{e['excerpt']}”)"
        for e in report.get("empty_records", [])[:LISTED]
    ]
    if report.get("empty_outputs", 0) > LISTED:
        lines.append(f"... and {report['empty_outputs'] - LISTED} more empty replies")
    return lines


def format_check(report: dict) -> str:
    lines = [
        f"dataset {report['dataset']} ({report['formatting']}): {report['records']} records, "
        f"{report['valid']} valid, {len(report['problems'])} with problems",
        f"  with system prompt: {report['with_system']}, multi-turn: {report['multi_turn']}, "
        f"duplicates: {report['duplicates']}, empty outputs: {report['empty_outputs']}",
    ]
    lines += [f"  {line}" for line in named_records(report)]
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
    for p in report["problems"][:LISTED]:
        lines.append(f"  problem: {p}")
    if len(report["problems"]) > LISTED:
        lines.append(f"  ... and {len(report['problems']) - LISTED} more problems")
    return "\n".join(lines)
