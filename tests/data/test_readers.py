"""Raw records from .json / .jsonl / .csv / .parquet files and folders; errors name file, line and column."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneboard.data.readers import read_file, read_hub, read_records
from tuneboard.data.registry import DatasetSpec
from tuneboard.errors import DataError

RECS = [
    {"instruction": "浇水", "input": "", "output": "早上浇。"},
    {"instruction": "b", "input": "c", "output": "d"},
]


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_json_array(tmp_path):
    path = write(tmp_path / "a.json", json.dumps(RECS, ensure_ascii=False, indent=2))
    assert read_file(path) == RECS


def test_json_with_bom(tmp_path):
    path = write(tmp_path / "a.json", "\ufeff".encode() + json.dumps(RECS).encode())
    assert read_file(path) == RECS


def test_json_single_key_wrapper(tmp_path):
    path = write(tmp_path / "a.json", json.dumps({"train": RECS}))
    assert read_file(path) == RECS


def test_json_object_that_is_not_a_wrapper(tmp_path):
    path = write(tmp_path / "a.json", json.dumps(RECS[0]))
    with pytest.raises(
        DataError, match=r"a\.json: expected a JSON array of records at the top level, got an object"
    ):
        read_file(path)


@pytest.mark.parametrize(("text", "got"), [('"text"', "str"), ("42", "int"), ("null", "NoneType")])
def test_json_wrong_top_level_type(tmp_path, text, got):
    path = write(tmp_path / "a.json", text)
    with pytest.raises(DataError, match=f"expected a JSON array of records at the top level, got {got}"):
        read_file(path)


def test_json_file_holding_json_lines(tmp_path):
    path = write(tmp_path / "a.json", "\n".join(json.dumps(r) for r in RECS) + "\n")
    assert read_file(path) == RECS


def test_invalid_json_has_line_and_column(tmp_path):
    text = '[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c" "output": "d"}\n]'
    path = write(tmp_path / "a.json", text)
    with pytest.raises(DataError) as err:
        read_file(path)
    assert f"{path}: invalid JSON at line 3, column 23: Expecting ',' delimiter" == str(err.value)


def test_trailing_comma_in_array(tmp_path):
    path = write(tmp_path / "a.json", '[\n  {"instruction": "a", "output": "b"},\n]')
    with pytest.raises(DataError, match=r"line 3, column 1: .*trailing comma"):
        read_file(path)


def test_jsonl_skips_blank_lines_and_names_the_bad_line(tmp_path):
    good = write(tmp_path / "a.jsonl", json.dumps(RECS[0]) + "\n\n" + json.dumps(RECS[1]) + "\n")
    assert read_file(good) == RECS
    bad = write(tmp_path / "b.jsonl", json.dumps(RECS[0]) + "\n" + '{"instruction": "x",}\n')
    with pytest.raises(DataError, match=r"b\.jsonl: invalid JSON at line 2, column 21"):
        read_file(bad)


def test_csv(tmp_path):
    path = write(tmp_path / "a.csv", 'instruction,input,output\n"浇水",,"早上浇。"\nb,c,"d, with comma"\n')
    assert read_file(path) == [
        {"instruction": "浇水", "input": "", "output": "早上浇。"},
        {"instruction": "b", "input": "c", "output": "d, with comma"},
    ]


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "a.parquet"
    pq.write_table(pa.Table.from_pylist(RECS), path)
    assert read_file(path) == RECS
    broken = write(tmp_path / "b.parquet", b"not a parquet file")
    with pytest.raises(DataError, match=r"b\.parquet: cannot read as parquet"):
        read_file(broken)


def test_folder_reads_data_files_in_name_order(tmp_path):
    write(tmp_path / "d" / "2.jsonl", json.dumps(RECS[1]) + "\n")
    write(tmp_path / "d" / "1.json", json.dumps([RECS[0]]))
    write(tmp_path / "d" / ".hidden.json", json.dumps([{"x": 1}]))
    write(tmp_path / "d" / "notes.txt", "not data")
    assert read_file(tmp_path / "d") == RECS


def test_empty_folder(tmp_path):
    (tmp_path / "d").mkdir()
    write(tmp_path / "d" / "readme.md", "x")
    with pytest.raises(DataError, match="holds no .json/.jsonl/.csv/.parquet files"):
        read_file(tmp_path / "d")


def test_empty_file(tmp_path):
    with pytest.raises(DataError, match=r"a\.json: the file is empty"):
        read_file(write(tmp_path / "a.json", "  \n"))


def test_not_utf8_names_the_line(tmp_path):
    path = write(tmp_path / "a.json", b'[\n{"instruction": "\xc4\xe3\xba\xc3"}]')  # GBK bytes
    with pytest.raises(DataError, match=r"not valid UTF-8 \(line 2, byte offset 19\); save it as UTF-8"):
        read_file(path)


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(DataError, match=r"missing\.json: data file not found"):
        read_file(tmp_path / "missing.json")
    with pytest.raises(DataError, match=r"unsupported file type '\.docx'; use \.json, .*\.txt"):
        read_file(write(tmp_path / "a.docx", "x"))


def test_read_records_of_a_file_spec(tmp_path):
    path = write(tmp_path / "a.json", json.dumps(RECS))
    spec = DatasetSpec("a", "file", str(path))
    assert read_records(spec) == RECS


def test_hub_spec_passes_subset_split_and_folder_to_datasets(monkeypatch):
    import datasets

    seen = {}

    def fake_load(path, name=None, split=None, data_dir=None):
        seen.update(path=path, name=name, split=split, data_dir=data_dir)
        return [RECS[0]]

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    spec = DatasetSpec("x", "hf_hub", "org/x", subset="zh", split="validation", folder="sub")
    assert read_hub(spec) == [RECS[0]]
    assert seen == {"path": "org/x", "name": "zh", "split": "validation", "data_dir": "sub"}


def test_hub_failure_is_a_data_error(monkeypatch):
    import datasets

    def fail(*a, **k):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", fail)
    with pytest.raises(DataError, match="dataset 'x': cannot load 'org/x' from the Hugging Face hub"):
        read_hub(DatasetSpec("x", "hf_hub", "org/x"))


def test_a_link_in_a_folder_cannot_lead_out_of_it(tmp_path):
    """A folder dataset reads its own files: a symbolic link to a file elsewhere is refused by name."""
    write(tmp_path / "elsewhere" / "secret.json", json.dumps(RECS))
    write(tmp_path / "d" / "1.json", json.dumps([RECS[0]]))
    (tmp_path / "d" / "2.json").symlink_to(tmp_path / "elsewhere" / "secret.json")
    with pytest.raises(DataError, match=r"2\.json: a link to .*secret\.json, outside the folder"):
        read_file(tmp_path / "d")
    (tmp_path / "d" / "2.json").unlink()
    (tmp_path / "d" / "2.json").symlink_to(tmp_path / "d" / "1.json")  # a link inside the folder is fine
    assert read_file(tmp_path / "d") == [RECS[0], RECS[0]]


def test_a_folder_does_not_recurse_into_a_folder_named_like_a_data_file(tmp_path):
    write(tmp_path / "d" / "1.json", json.dumps([RECS[0]]))
    write(tmp_path / "d" / "sub.json" / "deep.json", json.dumps([RECS[1]]))
    with pytest.raises(DataError, match=r"sub\.json: is a folder inside the folder dataset"):
        read_file(tmp_path / "d")


@pytest.mark.parametrize(("row", "fields"), [("q,a,extra,more", 4), ("only-one", 1)])
def test_a_ragged_csv_row_is_refused_with_its_line(tmp_path, row, fields):
    """csv.DictReader keeps extra fields under the key None (and fills missing ones with None): never read."""
    path = write(tmp_path / "a.csv", f"instruction,output\nq1,a1\n{row}\nq3,a3\n")
    with pytest.raises(DataError, match=f"a.csv: line 3 has {fields} fields, the header has 2"):
        read_file(path)


def test_a_hub_id_that_names_a_local_folder_is_not_read(tmp_path, monkeypatch):
    """datasets.load_dataset reads a local path when one exists by that name: a hub entry never does."""
    import datasets

    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: [{"secret": 1}])
    write(tmp_path / "org" / "set" / "a.json", json.dumps(RECS))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="dataset 'x': 'org/set' is a local path here, not read as a hub id"):
        read_hub(DatasetSpec("x", "hf_hub", "org/set"))
    with pytest.raises(DataError, match="is a local path here"):
        read_hub(DatasetSpec("x", "ms_hub", "org/set"))
