"""`data check` names the records it counts (duplicates, empty replies) and `data split` keeps repeated records
out of the test part; an invalid JSON file is an InvalidJSON error with its line, column and reason."""

from __future__ import annotations

import copy
import json
import pickle

import pytest

from tuneboard.cli.main import main
from tuneboard.data import commands as tools
from tuneboard.data.registry import InvalidJSON, spec_for_path

RECS = [
    {"instruction": "What is 2+2?", "output": "4"},
    {"instruction": "Name a color", "output": "red"},
    {"instruction": "What is 2+2?", "output": "4", "note": "same prompt and reply, another field"},
    {"instruction": "Say nothing " + "at all " * 10, "output": "  "},
    {"instruction": "Capital of France?", "output": "Paris"},
    {"instruction": "What is 2+2?", "output": "4"},
] + [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(14)]


@pytest.fixture
def src(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps(RECS), encoding="utf-8")
    return path


def test_check_names_duplicates_and_empty_replies_by_record(src):
    report = tools.check(spec_for_path(src))
    assert report["duplicates"] == 2 and report["empty_outputs"] == 1
    assert report["duplicate_records"] == [
        {"record": 2, "first": 0, "excerpt": "What is 2+2?"},
        {"record": 5, "first": 0, "excerpt": "What is 2+2?"},
    ]
    (empty,) = report["empty_records"]
    assert (
        empty["record"] == 3
        and empty["excerpt"].startswith("Say nothing at all")
        and len(empty["excerpt"]) == 40
    )


def test_check_cli_lists_the_records(capsys, src):
    assert main(["data", "check", str(src)]) == 0  # worth a look, not invalid: exit 0
    out = capsys.readouterr().out
    assert "duplicates: 2, empty outputs: 1" in out
    assert "  duplicate: record 2 repeats record 0 (“What is 2+2?”)" in out
    assert "  duplicate: record 5 repeats record 0 (“What is 2+2?”)" in out
    assert "  empty reply: record 3 (“Say nothing at all" in out


def test_check_cli_caps_the_list(capsys, tmp_path):
    path = tmp_path / "many.json"
    path.write_text(json.dumps([{"instruction": "same", "output": "x"}] * 25), encoding="utf-8")
    main(["data", "check", str(path)])
    out = capsys.readouterr().out
    assert out.count("  duplicate: record") == 20 and "... and 4 more duplicates" in out


def test_split_keeps_every_copy_of_a_repeated_record_in_the_train_part(capsys, src):
    for seed in range(8):
        result = tools.split(src, 0.25, seed=seed, force=True)
        assert result.repeated == [0, 2, 5] and (result.n_train, result.n_test) == (15, 5)
        test = json.loads(result.test.read_text(encoding="utf-8"))
        assert not any(r["instruction"] == "What is 2+2?" for r in test)
    assert main(["data", "split", str(src), "--val-size", "3", "--force"]) == 0
    out = capsys.readouterr().out
    assert "(17 records)" in out and "(3 records)" in out
    assert "3 records occur more than once (records 0, 2, 5): every copy is in the train part" in out


def test_split_refuses_a_test_part_larger_than_the_unique_records(src):
    with pytest.raises(tools.DataError, match="needs 18 records that occur once, and only 17 do"):
        tools.split(src, 18)
    assert not src.with_name("d_test.json").exists()


def test_invalid_json_names_line_column_and_reason(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('[{"instruction": "a", "output": "b"},\n{"instruction": "a" "output": "b"}]')
    with pytest.raises(InvalidJSON) as info:
        tools.check(spec_for_path(bad))
    exc = info.value
    assert (exc.line, exc.column, exc.reason, exc.hint) == (2, 21, "Expecting ',' delimiter", "")
    assert str(exc) == f"{bad}: invalid JSON at line 2, column 21: Expecting ',' delimiter"
    for clone in (copy.deepcopy(exc), pickle.loads(pickle.dumps(exc))):
        assert str(clone) == str(exc) and clone.line == 2
    lines = tmp_path / "bad.jsonl"
    lines.write_text('{"instruction": "a", "output": "b"}\n{"instruction": // no\n')
    with pytest.raises(InvalidJSON) as info:
        tools.check(spec_for_path(lines))
    assert info.value.line == 2
