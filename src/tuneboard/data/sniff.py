"""What a data file passed by path holds, and pre-training text in any file: `sniff_formatting` fills in the
formatting and columns a registry entry would give (ShareGPT / OpenAI records by their fields; plain text as
one document per record, with no reply column).

Data layer, between the reader and formats.py (pipeline.load_spec and the `data` commands call it).
"""

from __future__ import annotations

from typing import Any

from .formats import default_tags, effective_columns
from .registry import DatasetSpec

CONVERSATION_FIELDS = ("instruction", "output", "conversations", "messages", "chosen")


def _text_column(spec: DatasetSpec, records: list[Any]) -> str | None:
    """The text field when the dataset is pre-training text: a .txt file; an alpaca entry that maps `prompt`
    and no `response` to records without a reply field (LLaMA-Factory's c4_demo); a file passed by path whose
    records hold `text` and no conversation field."""
    if spec.path.endswith(".txt") and spec.load_from == "file":
        return "text"
    if spec.formatting != "alpaca" or spec.ranking or not records or not isinstance(records[0], dict):
        return None
    first, declared = records[0], spec.declared_columns
    if declared is not None:
        if "prompt" in declared and "response" not in declared and spec.columns["response"] not in first:
            return declared["prompt"]
        return None
    if "text" in first and not any(f in first for f in CONVERSATION_FIELDS):
        return "text"
    return None


def sniff_formatting(spec: DatasetSpec, records: list[Any]) -> DatasetSpec:
    """A file passed by path has no entry: recognise ShareGPT / OpenAI records by their fields. Pre-training
    text of any file gets no response column (formats.from_alpaca then makes one document of each record)."""
    text = _text_column(spec, records)
    if text is not None:
        spec.formatting, spec.tags = "alpaca", {}
        spec.columns = {**effective_columns("alpaca", spec.declared_columns), "prompt": text, "response": ""}
        return spec
    if spec.declared_columns is not None or not records or not isinstance(records[0], dict):
        return spec
    first = records[0]
    fmt = spec.formatting
    if "conversations" in first:
        fmt = "sharegpt"
    elif "messages" in first:
        fmt = (
            "openai"
            if isinstance(first["messages"], list) and "role" in (first["messages"] or [{}])[0]
            else "sharegpt"
        )
        if fmt == "sharegpt":
            spec.columns = effective_columns("sharegpt", {"messages": "messages"})
            spec.tags = default_tags("sharegpt")
            spec.formatting = fmt
            return spec
    if fmt != spec.formatting:
        spec.formatting, spec.columns, spec.tags = fmt, effective_columns(fmt, None), default_tags(fmt)
    return spec
