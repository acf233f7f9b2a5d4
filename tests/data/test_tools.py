"""The `tuneboard data` commands: identity, add, split, check, preview (driven through the real CLI)."""

from __future__ import annotations

import json
import os
import shutil
import statistics
from pathlib import Path

import pytest

from tuneboard.cli.main import main
from tuneboard.data import commands as tools
from tuneboard.data.formats import default_tags, effective_columns, to_conversation
from tuneboard.data.pipeline import load_conversations
from tuneboard.data.registry import resolve, spec_for_path
from tuneboard.data.templates.named import get_template
from tuneboard.errors import DataError, TuneboardError

QWEN = get_template("qwen")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def leftovers(folder: Path) -> list[str]:
    """Temporary files an atomic write would leave behind if it were interrupted."""
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name or ".partial-" in p.name)


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    return path


# ---- identity


@pytest.fixture
def identity_file(tmp_path, lf_data_dir) -> Path:
    return Path(shutil.copy(lf_data_dir / "identity.json", tmp_path / "identity.json"))


def test_identity_fills_and_keeps_the_template(capsys, identity_file):
    original = identity_file.read_text(encoding="utf-8")
    code, out, err = run(
        capsys, "data", "identity", "--name", "小园", "--author", "GreenLab", "--file", str(identity_file)
    )
    assert code == 0 and err == ""
    assert "小园" in out and str(identity_file) in out
    filled = json.loads(identity_file.read_text(encoding="utf-8"))
    assert filled[0]["output"] == "你好！我是 小园，由 GreenLab 打造的助手。"
    assert "{{" not in identity_file.read_text(encoding="utf-8")
    template = identity_file.with_name("identity.template.json")
    assert json.loads(template.read_text(encoding="utf-8")) == json.loads(original)
    assert leftovers(identity_file.parent) == []


def test_identity_second_run_with_a_new_name_starts_from_the_template(capsys, identity_file):
    assert (
        run(capsys, "data", "identity", "--name", "First", "--author", "A", "--file", str(identity_file))[0]
        == 0
    )
    assert (
        run(capsys, "data", "identity", "--name", "Second", "--author", "B", "--file", str(identity_file))[0]
        == 0
    )
    text = identity_file.read_text(encoding="utf-8")
    assert "Second" in text and "First" not in text and "built by B." in text
    assert "{{name}}" in identity_file.with_name("identity.template.json").read_text(encoding="utf-8")


def test_identity_escapes_json_special_characters(capsys, identity_file):
    name = 'Q "quoted" \\ back'
    assert (
        run(capsys, "data", "identity", "--name", name, "--author", "x\ny", "--file", str(identity_file))[0]
        == 0
    )
    filled = json.loads(identity_file.read_text(encoding="utf-8"))
    assert filled[1]["output"] == f"I am {name}, an assistant built by x\ny."


def test_identity_output_elsewhere_leaves_the_source(capsys, identity_file, tmp_path):
    before = identity_file.read_text(encoding="utf-8")
    out = tmp_path / "filled.json"
    assert (
        run(
            capsys,
            "data",
            "identity",
            "--name",
            "N",
            "--author",
            "A",
            "--file",
            str(identity_file),
            "--output",
            str(out),
        )[0]
        == 0
    )
    assert identity_file.read_text(encoding="utf-8") == before
    assert not identity_file.with_name("identity.template.json").exists()
    assert "I am N" in out.read_text(encoding="utf-8")


def test_identity_write_is_atomic(identity_file, monkeypatch):
    before = identity_file.read_text(encoding="utf-8")
    tools.identity("One", "A", identity_file)  # template now exists
    filled = identity_file.read_text(encoding="utf-8")

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(
        TuneboardError, match="cannot write .*No space left on device.*previous state is kept"
    ):
        tools.identity("Two", "B", identity_file)
    assert identity_file.read_text(encoding="utf-8") == filled
    assert identity_file.with_name("identity.template.json").read_text(encoding="utf-8").count(
        "{{name}}"
    ) == before.count("{{name}}")
    assert leftovers(identity_file.parent) == []


def test_identity_errors(capsys, tmp_path):
    plain = write_json(tmp_path / "plain.json", [{"instruction": "a", "output": "b"}])
    code, out, err = run(capsys, "data", "identity", "--name", "N", "--author", "A", "--file", str(plain))
    assert code == 1 and "holds no {{name}} or {{author}} placeholders" in err
    code, _, err = run(capsys, "data", "identity", "--name", " ", "--author", "A", "--file", str(plain))
    assert code == 1 and "--name and --author must not be empty" in err
    code, _, err = run(
        capsys, "data", "identity", "--name", "N", "--author", "A", "--file", str(tmp_path / "none.json")
    )
    assert code == 1 and "none.json: data file not found" in err


# ---- add


@pytest.fixture
def registry_dir(tmp_path) -> Path:
    root = tmp_path / "data"
    write_json(root / "zeta.json", [{"instruction": "z", "output": "z"}])
    info = {
        "zeta": {"file_name": "zeta.json"},
        "alpha": {"hf_hub_url": "org/alpha", "columns": {"prompt": "q", "response": "a"}},
        "mid": {"file_name": "mid.json", "formatting": "sharegpt", "tags": {"role_tag": "role"}},
    }
    write_json(root / "dataset_info.json", info)
    return root


def info_of(root: Path) -> dict:
    return json.loads((root / "dataset_info.json").read_text(encoding="utf-8"))


def test_add_registers_and_keeps_other_entries_in_order(capsys, registry_dir):
    before = info_of(registry_dir)
    write_json(registry_dir / "mine.json", [{"instruction": "q", "input": "", "output": "a", "system": "s"}])
    code, out, err = run(
        capsys, "data", "add", "mine", str(registry_dir / "mine.json"), "--dataset-dir", str(registry_dir)
    )
    assert code == 0 and err == "" and "registered 'mine'" in out
    after = info_of(registry_dir)
    assert list(after) == ["zeta", "alpha", "mid", "mine"]
    assert {k: after[k] for k in before} == before
    assert after["mine"] == {"file_name": "mine.json"}
    assert leftovers(registry_dir) == []
    convs, _ = load_conversations(["mine"], registry_dir)
    assert convs[0].system == "s"


def test_add_validates_first(capsys, registry_dir):
    before = (registry_dir / "dataset_info.json").read_text(encoding="utf-8")
    bad = [{"instruction": "ok", "output": "ok"}, {"instruction": "q"}, {"instruction": ["x"], "output": "y"}]
    write_json(registry_dir / "bad.json", bad)
    code, out, err = run(
        capsys, "data", "add", "bad", str(registry_dir / "bad.json"), "--dataset-dir", str(registry_dir)
    )
    assert code == 1 and out == ""
    assert "bad.json: not registered" in err
    assert "record 1: missing required field 'output'" in err
    assert "record 2: field 'instruction' must be a string, got list" in err
    assert "Traceback" not in err
    assert (registry_dir / "dataset_info.json").read_text(encoding="utf-8") == before


def test_add_refuses_a_file_outside_the_dataset_dir(capsys, registry_dir, tmp_path):
    outside = write_json(tmp_path / "outside.json", [{"instruction": "q", "output": "a"}])
    code, _, err = run(capsys, "data", "add", "out", str(outside), "--dataset-dir", str(registry_dir))
    assert code == 1 and "outside.json: is outside the dataset directory" in err
    assert "out" not in info_of(registry_dir)


def test_add_refuses_an_existing_name_without_force(capsys, registry_dir):
    write_json(registry_dir / "new_zeta.json", [{"instruction": "q", "output": "a"}])
    args = ["data", "add", "zeta", str(registry_dir / "new_zeta.json"), "--dataset-dir", str(registry_dir)]
    code, _, err = run(capsys, *args)
    assert code == 1 and "dataset 'zeta' is already registered (use --force to replace)" in err
    assert info_of(registry_dir)["zeta"] == {"file_name": "zeta.json"}
    assert run(capsys, *args, "--force")[0] == 0
    after = info_of(registry_dir)
    assert after["zeta"] == {"file_name": "new_zeta.json"} and list(after) == ["zeta", "alpha", "mid"]


def test_add_creates_the_registry(capsys, tmp_path):
    write_json(tmp_path / "d" / "a.jsonl", []).write_text('{"instruction": "q", "output": "a"}\n')
    assert (
        run(
            capsys, "data", "add", "a", str(tmp_path / "d" / "a.jsonl"), "--dataset-dir", str(tmp_path / "d")
        )[0]
        == 0
    )
    assert info_of(tmp_path / "d") == {"a": {"file_name": "a.jsonl"}}


def test_add_spells_out_a_sniffed_sharegpt_format(capsys, registry_dir, lf_data_dir):
    """The entry must read the same in LLaMA-Factory, which does not sniff: formatting, columns, tags."""
    shutil.copy(lf_data_dir / "kitchen_sharegpt.json", registry_dir / "k.json")
    shutil.copy(lf_data_dir / "messages_chat.json", registry_dir / "m.json")
    assert (
        run(capsys, "data", "add", "k", str(registry_dir / "k.json"), "--dataset-dir", str(registry_dir))[0]
        == 0
    )
    assert (
        run(capsys, "data", "add", "m", str(registry_dir / "m.json"), "--dataset-dir", str(registry_dir))[0]
        == 0
    )
    info = info_of(registry_dir)
    assert info["k"] == {"file_name": "k.json", "formatting": "sharegpt"}
    assert info["m"]["formatting"] == "openai" and info["m"]["columns"] == {"messages": "messages"}
    assert info["m"]["tags"]["role_tag"] == "role" and info["m"]["tags"]["user_tag"] == "user"
    direct, _ = load_conversations([str(registry_dir / "m.json")], registry_dir)
    registered, specs = load_conversations(["m"], registry_dir)
    assert specs[0].declared_columns == {"messages": "messages"}  # read as written, not sniffed
    assert [c.messages for c in registered] == [c.messages for c in direct]
    assert [c.system for c in registered] == [c.system for c in direct]


def test_add_with_formatting(capsys, registry_dir, lf_data_dir):
    shutil.copy(lf_data_dir / "kitchen_sharegpt.json", registry_dir / "k.json")
    args = ["data", "add", "k", str(registry_dir / "k.json"), "--dataset-dir", str(registry_dir)]
    assert run(capsys, *args, "--formatting", "sharegpt")[0] == 0
    assert info_of(registry_dir)["k"] == {"file_name": "k.json", "formatting": "sharegpt"}


# ---- split


def test_split_writes_train_and_test(capsys, tmp_path):
    recs = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(20)]
    src = write_json(tmp_path / "mydata.json", recs)
    code, out, _ = run(capsys, "data", "split", str(src), "--val-size", "0.2", "--seed", "3")
    assert code == 0 and "(16 records)" in out and "(4 records)" in out
    train = json.loads((tmp_path / "mydata_train.json").read_text(encoding="utf-8"))
    test = json.loads((tmp_path / "mydata_test.json").read_text(encoding="utf-8"))
    assert (len(train), len(test)) == (16, 4)
    assert sorted(r["instruction"] for r in train + test) == sorted(r["instruction"] for r in recs)
    assert [recs.index(r) for r in test] == sorted(recs.index(r) for r in test)  # file order kept
    # deterministic under the seed; another seed gives another split
    assert tools.split(src, 0.2, seed=3, force=True)[3] == 4
    assert json.loads((tmp_path / "mydata_test.json").read_text(encoding="utf-8")) == test
    tools.split(src, 0.2, seed=4, force=True)
    assert json.loads((tmp_path / "mydata_test.json").read_text(encoding="utf-8")) != test
    assert leftovers(tmp_path) == []


def test_split_by_count_and_bad_sizes(capsys, tmp_path):
    src = write_json(tmp_path / "d.json", [{"instruction": f"q{i}", "output": "a"} for i in range(5)])
    assert tools.split(src, 2, seed=1)[2:4] == (3, 2)
    code, _, err = run(capsys, "data", "split", str(src), "--val-size", "5", "--force")
    assert code == 1 and "--val-size 5.0 gives 5 test records out of 5" in err


# ---- check


CHECK_RECORDS = [
    {"instruction": "浇水多久一次？", "input": "", "output": "每周一次。", "category": "garden"},
    {"instruction": "浇水多久一次？", "input": "", "output": "每周一次。"},  # duplicate of 0
    {"instruction": "q", "input": ""},  # missing output
    {"instruction": "empty answer", "input": "", "output": "  "},
    {"instruction": 42.5, "input": "", "output": "numbers are text"},
    {"instruction": ["x"], "input": "", "output": "y"},  # non-string
    {"instruction": "long " * 60, "input": "", "output": "fine", "system": "s", "history": [["h", "i"]]},
    {"instruction": "ok", "input": "", "output": "ok", "category": "", "id": 7},
]


def test_check_reports_problems_duplicates_empty_and_unmapped(tmp_path):
    src = write_json(tmp_path / "c.json", CHECK_RECORDS)
    report = tools.check(spec_for_path(src))
    assert report["records"] == 8 and report["valid"] == 6
    assert report["problems"] == [
        "record 2: missing required field 'output'",
        "record 5: field 'instruction' must be a string, got list",
    ]
    assert report["duplicates"] == 1 and report["empty_outputs"] == 1
    assert report["with_system"] == 1 and report["multi_turn"] == 1
    assert report["unmapped_fields"] == {"category": 1, "id": 1}
    assert "tokens" not in report
    text = tools.format_check(report)
    assert "8 records, 6 valid, 2 with problems" in text
    assert "duplicates: 1, empty outputs: 1" in text
    assert "fields no column maps (NOT trained on): category (1 records), id (1 records)" in text
    assert "problem: record 2: missing required field 'output'" in text
    assert report["with_tools"] == 0 and "with tools" not in text


def test_check_says_which_templates_render_tool_definitions(tmp_path, tiny_tokenizer):
    tool = [{"name": "get_weather", "parameters": {"type": "object", "properties": {}}}]
    records = [
        {"instruction": "天气？", "output": "晴", "tools": tool},
        {"instruction": "hi", "output": "hello"},
    ]
    spec = spec_for_path(write_json(tmp_path / "t.json", records))
    report = tools.check(spec)
    assert report["with_tools"] == 1 and report["unmapped_fields"] == {} and report["tools_rendered"] is None
    assert "1 records; templates qwen, qwen3, qwen3_nothink (and auto" in tools.format_check(report)
    report = tools.check(spec, tiny_tokenizer, QWEN)
    assert report["tools_rendered"] is True
    assert "the template writes them into the prompt" in tools.format_check(report)
    report = tools.check(spec, tiny_tokenizer, get_template("llama3"))
    assert report["tools_rendered"] is False
    assert "this template does NOT render them (trained without them)" in tools.format_check(report)


def test_check_reports_tools_and_calls_that_do_not_parse(tmp_path):
    records = [
        {"instruction": "a", "output": "b", "tools": "[{not json"},
        {"instruction": "a", "output": "b", "tools": "[1, 2]"},
        {
            "conversations": [
                {"from": "human", "value": "q"},
                {"from": "function_call", "value": "get_weather"},
            ]
        },
        {
            "conversations": [
                {"from": "human", "value": "q"},
                {"from": "function_call", "value": '{"arguments": {}}'},
            ]
        },
    ]
    report = tools.check(spec_for_path(write_json(tmp_path / "t.json", records[:2])))
    assert report["valid"] == 0
    assert report["problems"][0].startswith("record 0: field 'tools' is not a list of function definitions: ")
    assert "line 1 column 3" in report["problems"][0]
    assert report["problems"][1].endswith("it must be a JSON list of function definitions (objects)")
    report = tools.check(spec_for_path(write_json(tmp_path / "c.json", records[2:])))
    assert report["problems"][0].startswith("record 0: message 1 (function call) is not a JSON call: ")
    assert report["problems"][1] == (
        'record 1: message 1 (function call) is not a JSON call: each call must be a JSON object with a "name" '
        '(and "arguments")'
    )


def test_check_token_lengths(tmp_path, tiny_tokenizer):
    src = write_json(tmp_path / "c.json", CHECK_RECORDS)
    report = tools.check(spec_for_path(src), tiny_tokenizer, QWEN, cutoff_len=60)
    # independent count: the rendered conversation tokenized whole
    valid = [r for i, r in enumerate(CHECK_RECORDS) if i not in (2, 5)]
    cols, tags = effective_columns("alpaca", None), default_tags("alpaca")
    texts = [QWEN.text(to_conversation(r, "alpaca", cols, tags, "x"), for_training=True) for r in valid]
    lengths = sorted(len(ids) for ids in tiny_tokenizer(texts, add_special_tokens=False)["input_ids"])
    t = report["tokens"]
    assert t["max"] == lengths[-1] and t["p50"] == int(statistics.median(lengths))
    assert t["p90"] == int(statistics.quantiles(lengths, n=10)[8])
    assert t["over_cutoff"] == sum(n > 60 for n in lengths) >= 1
    assert t["cutoff_len"] == 60
    assert (
        f"tokens p50 {t['p50']}, p90 {t['p90']}, max {t['max']}; {t['over_cutoff']} over cutoff_len=60"
        in tools.format_check(report)
    )


def test_check_cli_exit_codes(capsys, tmp_path, lf_data_dir):
    code, out, err = run(capsys, "data", "check", "garden_zh", "--dataset-dir", str(lf_data_dir))
    assert (
        code == 0 and "dataset garden_zh (alpaca): 3 records, 3 valid, 0 with problems" in out and err == ""
    )
    src = write_json(tmp_path / "c.json", CHECK_RECORDS)
    code, out, _ = run(
        capsys,
        "data",
        "check",
        str(src),
        "--model",
        "builtin:tiny",
        "--template",
        "qwen",
        "--cutoff-len",
        "60",
    )
    assert code == 1
    assert "problem: record 5: field 'instruction' must be a string, got list" in out
    assert "over cutoff_len=60" in out


def test_check_sharegpt_problem_names_message(tmp_path):
    recs = [{"conversations": [{"from": "human", "value": "a"}, {"from": "human", "value": "b"}]}]
    report = tools.check(spec_for_path(write_json(tmp_path / "s.json", recs)))
    assert report["formatting"] == "sharegpt"
    assert report["problems"] == [
        "record 0: field 'conversations': message 1 is user, expected assistant/function (roles must alternate)"
    ]


# ---- preview


def test_preview_marks_trained_spans(capsys, lf_data_dir):
    code, out, err = run(
        capsys,
        "data",
        "preview",
        "kitchen_sharegpt",
        "--dataset-dir",
        str(lf_data_dir),
        "--template",
        "qwen",
        "-n",
        "1",
    )
    assert code == 0 and err == ""
    assert out.startswith("--- record 0: ")
    assert "[[加两三勺热水，盖上锅盖用小火焖五分钟。<|im_end|>]]" in out
    assert "[[米和水的比例大约 1:1.2，煮好后再焖十分钟。<|im_end|>]]" in out
    assert "<|im_start|>user\n米饭煮得太硬怎么办？<|im_end|>\n<|im_start|>assistant\n[[" in out
    assert "<|im_start|>system\n你是一位家常菜厨师。<|im_end|>" in out
    assert out.count("<|im_end|>]]") == 2 and "--- record 1" not in out


def test_preview_counts_match_labels(tiny_tokenizer, lf_data_dir):
    (spec,) = resolve(["garden_zh"], lf_data_dir)
    text = tools.preview(spec, tiny_tokenizer, QWEN, n=3)
    assert text.count("--- record") == 3
    assert "[[Mint prefers partial shade and a moist environment.<|im_end|>]]" in text
    assert text.count("<|im_end|>]]") == 1 + 1 + 3  # the third record has two history replies


def test_preview_reports_a_record_dropped_by_cutoff(tiny_tokenizer, lf_data_dir):
    (spec,) = resolve(["garden_zh"], lf_data_dir)
    assert "--- record 0: dropped (no trainable token within cutoff_len=1)" in tools.preview(
        spec, tiny_tokenizer, QWEN, n=1, cutoff_len=1
    )


def test_resolve_one_prefers_an_existing_file(tmp_path, lf_data_dir):
    assert tools.resolve_one(str(lf_data_dir / "garden_zh.json"), tmp_path).path == str(
        lf_data_dir / "garden_zh.json"
    )
    with pytest.raises(DataError, match="dataset 'nope' is not defined"):
        tools.resolve_one("nope", lf_data_dir)


def test_data_templates_lists_every_named_template(capsys):
    from tuneboard.data.templates.named import TEMPLATES

    assert main(["data", "templates"]) == 0
    rows = {line.split()[0]: line.split()[1] for line in capsys.readouterr().out.splitlines()[1:]}
    assert set(rows) == {*TEMPLATES, "auto"}
    assert rows["qwen"] == rows["qwen3"] == "yes" and rows["llama3"] == "-"
