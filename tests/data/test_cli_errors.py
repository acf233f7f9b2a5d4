"""Bad input through the real CLI: exit code 1, one message naming file / record / field, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tuneboard.cli.main import main

GOOD = [
    {"instruction": "浇水多久一次？", "input": "", "output": "每周一次。"},
    {"instruction": "q", "input": "", "output": "a"},
]


def one_error(err: str) -> str:
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    return errors[0]


def cli(capsys, *argv: str) -> str:
    """Run the CLI in-process; return the single error line after asserting exit code 1."""
    code = main(list(argv))
    err = capsys.readouterr().err
    assert code == 1, err
    return one_error(err)


@pytest.fixture
def workspace(tmp_path, token_cache) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    (data / "good.json").write_text(json.dumps(GOOD, ensure_ascii=False), encoding="utf-8")
    (data / "dataset_info.json").write_text(
        json.dumps({"good": {"file_name": "good.json"}}), encoding="utf-8"
    )
    return tmp_path


def register(ws: Path, name: str, records=None, text: str | None = None, **entry) -> Path:
    suffix = entry.pop("suffix", ".json")
    path = ws / "data" / f"{name}{suffix}"
    if records is not None or text is not None:
        path.write_text(
            text if text is not None else json.dumps(records, ensure_ascii=False), encoding="utf-8"
        )
    info_path = ws / "data" / "dataset_info.json"
    info = json.loads(info_path.read_text(encoding="utf-8"))
    info[name] = {"file_name": path.name, **entry}
    info_path.write_text(json.dumps(info), encoding="utf-8")
    return path


def train_config(ws: Path, **keys) -> str:
    base = dict(
        model_name_or_path="builtin:tiny",
        dataset="good",
        dataset_dir=str(ws / "data"),
        template="qwen",
        cutoff_len=128,
        output_dir=str(ws / "out"),
        max_steps=1,
    )
    base.update(keys)
    path = ws / "train.yaml"
    path.write_text(yaml.safe_dump(base, allow_unicode=True), encoding="utf-8")
    return str(path)


def train(capsys, ws: Path, **keys) -> str:
    msg = cli(capsys, "train", train_config(ws, **keys))
    assert not (ws / "out").exists()  # nothing written where a result would be looked for
    return msg


def test_file_that_is_not_valid_json(capsys, workspace):
    path = register(
        workspace,
        "broken",
        text='[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c" "output": "d"}\n]',
    )
    msg = train(capsys, workspace, dataset="broken")
    assert msg == f"error: {path}: invalid JSON at line 3, column 23: Expecting ',' delimiter"


def test_dataset_info_with_comments_gets_a_hint(capsys, workspace):
    info = workspace / "data" / "dataset_info.json"
    info.write_text(
        '{\n  "good": {\n    "file_name": "good.json"  // the tutorial data\n  }\n}', encoding="utf-8"
    )
    msg = cli(capsys, "data", "check", "good", "--dataset-dir", str(workspace / "data"))
    assert str(info) in msg and "line 3" in msg and "column" in msg
    assert "JSON does not allow comments" in msg


@pytest.mark.parametrize(("text", "got"), [('{"a": [], "b": []}', "an object"), ('"just text"', "str")])
def test_wrong_top_level_type(capsys, workspace, text, got):
    path = register(workspace, "wrong", text=text)
    msg = train(capsys, workspace, dataset="wrong")
    assert msg == f"error: {path}: expected a JSON array of records at the top level, got {got}"


def test_missing_required_field(capsys, workspace):
    path = register(workspace, "missing", [GOOD[0], {"instruction": "no answer", "input": ""}])
    msg = train(capsys, workspace, dataset="good,missing")
    assert msg == f"error: {path}: record 1: missing required field 'output'"


def test_non_string_field(capsys, workspace):
    path = register(workspace, "typed", [GOOD[0], GOOD[1], {"instruction": "q", "output": {"text": "a"}}])
    msg = train(capsys, workspace, dataset="typed")
    assert msg == f"error: {path}: record 2: field 'output' must be a string, got dict"


def test_non_string_field_with_columns_names_the_users_field(capsys, workspace):
    path = register(
        workspace,
        "cols",
        [{"question": ["a"], "answer": "b"}],
        columns={"prompt": "question", "response": "answer"},
    )
    msg = cli(
        capsys, "data", "preview", "cols", "--dataset-dir", str(workspace / "data"), "--template", "qwen"
    )
    assert msg == f"error: {path}: record 0: field 'question' must be a string, got list"


def test_unknown_dataset_name_lists_close_ones(capsys, workspace):
    register(workspace, "garden_train", GOOD)
    register(workspace, "garden_test", GOOD)
    msg = train(capsys, workspace, dataset="garden_tran")
    assert "dataset 'garden_tran' is not defined in" in msg and "dataset_info.json" in msg
    assert "did you mean 'garden_train', 'garden_test'?" in msg


def test_missing_file(capsys, workspace):
    register(workspace, "ghost")  # registered, but the file was never copied
    msg = train(capsys, workspace, dataset="ghost")
    assert msg == f"error: {workspace / 'data' / 'ghost.json'}: data file not found"


def test_unknown_formatting(capsys, workspace):
    register(workspace, "fmt", GOOD, formatting="share_gpt")
    msg = train(capsys, workspace, dataset="fmt")
    assert (
        "dataset_info.json: entry 'fmt': 'formatting' is 'share_gpt'; expected one of alpaca, sharegpt, openai"
        in msg
    )


def test_unknown_template(capsys, workspace):
    msg = train(capsys, workspace, template="qwen25")
    assert "unknown template 'qwen25'" in msg and "did you mean" in msg and "'qwen'" in msg


def test_sharegpt_roles_that_do_not_alternate(capsys, workspace):
    recs = [
        {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]},
        {
            "conversations": [
                {"from": "human", "value": "a"},
                {"from": "human", "value": "b"},
                {"from": "gpt", "value": "c"},
            ]
        },
    ]
    path = register(workspace, "chat", recs, formatting="sharegpt")
    msg = train(capsys, workspace, dataset="chat")
    assert msg == (
        f"error: {path}: record 1: field 'conversations': message 1 is user, expected assistant/function "
        "(roles must alternate)"
    )


def test_dataset_empty_after_filtering(capsys, workspace):
    path = workspace / "data" / "good.json"
    msg = train(capsys, workspace, cutoff_len=1)
    assert "no training samples left: all 2 records lost every trained token to cutoff_len=1" in msg
    assert f"{path}: record 0" in msg


def test_empty_dataset_file(capsys, workspace):
    path = register(workspace, "nothing", [])
    msg = train(capsys, workspace, dataset="nothing")
    assert msg == f"error: {path}: no records"


def test_error_through_a_real_process(workspace):
    """`python -m tuneboard` as a user runs it: exit 1, the message on stderr, no traceback."""
    path = register(workspace, "broken", text='[{"instruction": "a", "output": "b"},]')
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tuneboard",
            "data",
            "check",
            "broken",
            "--dataset-dir",
            str(workspace / "data"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert one_error(proc.stderr) == (
        f"error: {path}: invalid JSON at line 1, column 38: Expecting value (a trailing comma or a missing value?)"
    )
    assert proc.stdout == ""
