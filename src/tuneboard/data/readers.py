"""Raw records from a file (.json array, .jsonl, .csv, .parquet), a folder of those, or a hub dataset.

Data layer, step 2 of the flow (registry -> *read* -> to Conversation). Errors name file, line, column.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from ..errors import DataError
from .registry import DATA_SUFFIXES, DatasetSpec, InvalidJSON, json_error


def _text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a data file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path}: not valid UTF-8 (line {line}, byte offset {exc.start}); save it as UTF-8"
        ) from None


def _unparsable(path: Path, exc: Exception, line: int | None = None) -> DataError:
    """JSON that is well-formed but beyond what Python reads: a number over 4300 digits, nesting too deep."""
    where = f" at line {line}" if line else ""
    reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc).split(";")[0]
    return DataError(f"{path}: cannot read the JSON{where}: {reason}")


def read_json(path: Path) -> list[Any]:
    text = _text(path)
    if not text.strip():
        raise DataError(f"{path}: the file is empty")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data" and text.lstrip().startswith("{"):
            return read_jsonl(path, text)  # a .json file that holds JSON lines
        raise json_error(path, text, exc) from None
    except (ValueError, RecursionError) as exc:
        raise _unparsable(path, exc) from None
    if isinstance(data, dict):
        for value in data.values():  # {"train": [...]}-style wrappers are common
            if isinstance(value, list) and len(data) == 1:
                return value
        raise DataError(f"{path}: expected a JSON array of records at the top level, got an object")
    if not isinstance(data, list):
        raise DataError(
            f"{path}: expected a JSON array of records at the top level, got {type(data).__name__}"
        )
    return data


def read_jsonl(path: Path, text: str | None = None) -> list[Any]:
    text = _text(path) if text is None else text
    records = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise InvalidJSON(path, lineno, exc.colno, exc.msg) from None
        except (ValueError, RecursionError) as exc:
            raise _unparsable(path, exc, lineno) from None
    return records


def read_csv(path: Path) -> list[Any]:
    text = _text(path)
    reader = csv.reader(text.splitlines())
    try:
        header = next(reader, [])
        records = []
        for row in reader:
            if len(row) != len(header):  # DictReader would keep extras under None, fill missing with None
                raise DataError(
                    f"{path}: line {reader.line_num} has {len(row)} fields, the header has {len(header)} "
                    "(a value holding a comma needs double quotes)"
                )
            records.append(dict(zip(header, row, strict=True)))
    except csv.Error as exc:  # e.g. a field over the csv module's size limit (128 KiB)
        raise DataError(f"{path}: cannot read as CSV at line {reader.line_num}: {exc}") from None
    return records


def read_parquet(path: Path) -> list[Any]:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises several types for a broken file
        raise DataError(f"{path}: cannot read as parquet ({exc})") from None


def read_txt(path: Path) -> list[Any]:
    """Pre-training text, as LLaMA-Factory reads a .txt file: one document per line (blank lines skipped)."""
    return [{"text": line} for line in _text(path).splitlines() if line.strip()]


# .txt files are read when named; a folder dataset reads only the record files (DATA_SUFFIXES)
READERS = {
    ".json": read_json,
    ".jsonl": read_jsonl,
    ".csv": read_csv,
    ".parquet": read_parquet,
    ".txt": read_txt,
}


def _in_folder(file: Path, folder: Path) -> Path:
    """A folder dataset reads its own data files, one level deep: no link out of it, no sub-folder."""
    real, inside = file.resolve(), folder.resolve()
    if inside not in real.parents:
        raise DataError(
            f"{file}: a link to {real}, outside the folder dataset {folder}; copy the file into it instead"
        )
    if real.is_dir():
        raise DataError(f"{file}: is a folder inside the folder dataset {folder}; only its files are read")
    return file


def read_file(path: Path) -> list[Any]:
    if not path.exists():
        raise DataError(f"{path}: data file not found")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in DATA_SUFFIXES and not p.name.startswith("."))
        if not files:
            raise DataError(f"{path}: the folder holds no .json/.jsonl/.csv/.parquet files")
        return [rec for f in files for rec in read_file(_in_folder(f, path))]
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"{path}: unsupported file type '{path.suffix}'; use {', '.join(READERS)}")
    return reader(path)


def read_hub(spec: DatasetSpec) -> list[Any]:
    """Download through `datasets` (HF) or ModelScope; the one place hub data is fetched."""
    if Path(spec.path).expanduser().exists():  # both libraries would read the local path instead
        raise DataError(
            f"dataset '{spec.name}': '{spec.path}' is a local path here, not read as a hub id; "
            "register local data with 'file_name'"
        )
    if spec.load_from == "ms_hub":
        try:
            from modelscope import MsDataset
        except ImportError:
            raise DataError(
                f"dataset '{spec.name}': ModelScope is not installed (pip install modelscope)"
            ) from None
        ds = MsDataset.load(spec.path, subset_name=spec.subset, split=spec.split, data_dir=spec.folder)
        ds = ds.to_hf_dataset() if hasattr(ds, "to_hf_dataset") else ds
        return list(ds)
    import datasets

    try:
        ds = datasets.load_dataset(spec.path, name=spec.subset, split=spec.split, data_dir=spec.folder)
    except Exception as exc:  # network, auth and not-found errors all arrive here
        raise DataError(
            f"dataset '{spec.name}': cannot load '{spec.path}' from the Hugging Face hub ({exc})"
        ) from None
    return list(ds)


def read_records(spec: DatasetSpec) -> list[Any]:
    if spec.load_from == "file":
        return read_file(Path(spec.path))
    return read_hub(spec)
