"""What the `tuneboard data` commands refuse before writing anything: a split over existing files (unless
--force) or half registered, a name `dataset:` could never name, a cutoff of nothing; and the note on numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneboard.cli.main import main
from tuneboard.data import commands as tools
from tuneboard.data.registry import spec_for_path
from tuneboard.errors import DataError

RECS = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(10)]


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out + out.err


def files(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def data(tmp_path) -> Path:
    (tmp_path / "d.json").write_text(json.dumps(RECS), encoding="utf-8")
    return tmp_path


def test_split_keeps_an_existing_test_file_unless_forced(capsys, data):
    (data / "d_test.json").write_text("my own hand-made test set", encoding="utf-8")
    before = files(data)
    code, out = run(capsys, "data", "split", str(data / "d.json"))
    assert code == 1 and "d_test.json: already there; use --force to replace" in out, out
    assert files(data) == before  # d_train.json not written either
    code, out = run(capsys, "data", "split", str(data / "d.json"), "--force")
    assert code == 0 and len(json.loads((data / "d_test.json").read_text())) == 1


def test_split_and_register_is_all_or_nothing(data):
    """The web UI registers both parts: a name already taken is found before any file is written."""
    (data / "dataset_info.json").write_text(json.dumps({"d_test": {"file_name": "d.json"}}), encoding="utf-8")
    before = files(data)
    with pytest.raises(DataError, match="dataset 'd_test' is already registered"):
        tools.split(data / "d.json", 0.2, dataset_dir=data)
    assert files(data) == before
    tools.split(data / "d.json", 0.2, force=True, dataset_dir=data)
    info = json.loads((data / "dataset_info.json").read_text())
    assert info == {"d_test": {"file_name": "d_test.json"}, "d_train": {"file_name": "d_train.json"}}


def test_split_and_register_refuses_invalid_records_before_writing(data):
    (data / "bad.json").write_text(json.dumps([*RECS, {"instruction": "no output"}]), encoding="utf-8")
    before = files(data)
    with pytest.raises(
        DataError, match=r"bad\.json: not registered; record 10: missing required field 'output'"
    ):
        tools.split(data / "bad.json", 0.2, dataset_dir=data)
    assert files(data) == before


@pytest.mark.parametrize("name", ["", " ", "a,b", " padded", "x ", ","])
def test_add_refuses_a_name_dataset_could_never_name(capsys, data, name):
    code, out = run(capsys, "data", "add", name, str(data / "d.json"), "--dataset-dir", str(data))
    assert code == 1 and f"dataset name {name!r}: `dataset:` could never name it" in out, out
    assert not (data / "dataset_info.json").exists()


@pytest.mark.parametrize("command", ["check", "preview"])
@pytest.mark.parametrize("cutoff", ["0", "-5"])
def test_a_cutoff_of_nothing_is_refused(capsys, data, command, cutoff):
    argv = ["data", command, str(data / "d.json"), "--model", "builtin:tiny", "--cutoff-len", cutoff]
    code, out = run(capsys, *argv)
    assert code == 1 and f"--cutoff-len must be greater than 0, got {cutoff}" in out, out


def test_check_notes_numbers_read_as_text(data):
    recs = [{"instruction": "2+2?", "output": 4}, {"instruction": "pi?", "output": 3.14}, RECS[0]]
    (data / "n.json").write_text(json.dumps(recs), encoding="utf-8")
    report = tools.check(spec_for_path(data / "n.json"))
    assert report["problems"] == [] and report["numbers_as_text"] == {"output": 2}
    assert "numbers read as text (trained as written, e.g. 42.0 as '42.0'): output (2 records)" in (
        tools.format_check(report)
    )
