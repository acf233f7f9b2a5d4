"""dataset_info.json -> DatasetSpec: LLaMA-Factory entries, hub entries, paths as names, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneboard.data.formats import ALPACA_COLUMNS, OPENAI_TAGS, SHAREGPT_TAGS
from tuneboard.data.registry import looks_like_path, read_registry, resolve
from tuneboard.errors import DataError


def write_info(root: Path, info) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    text = info if isinstance(info, str) else json.dumps(info, ensure_ascii=False)
    (root / "dataset_info.json").write_text(text, encoding="utf-8")
    return root


def test_plain_entry_is_alpaca_with_standard_columns(lf_data_dir):
    (spec,) = resolve(["garden_zh"], lf_data_dir)
    assert spec.load_from == "file"
    assert Path(spec.path) == lf_data_dir / "garden_zh.json"
    assert spec.formatting == "alpaca"
    assert spec.columns == ALPACA_COLUMNS
    assert spec.declared_columns is None


def test_declared_columns_overlay_the_standard_names(lf_data_dir):
    (spec,) = resolve(["garden_cols"], lf_data_dir)
    assert spec.columns["prompt"] == "question"
    assert spec.columns["history"] == "earlier"
    assert spec.columns["tools"] == "tools"  # not declared: the standard name is still read
    assert spec.declared_columns == {
        "prompt": "question",
        "query": "context",
        "response": "answer",
        "system": "persona",
        "history": "earlier",
    }


def test_sharegpt_tags_override_only_what_is_given(lf_data_dir):
    (spec,) = resolve(["rolecontent_demo"], lf_data_dir)
    assert spec.formatting == "sharegpt"
    assert spec.tags["role_tag"] == "role" and spec.tags["assistant_tag"] == "assistant"
    assert spec.tags["observation_tag"] == SHAREGPT_TAGS["observation_tag"]
    (default,) = resolve(["kitchen_sharegpt"], lf_data_dir)
    assert default.tags == SHAREGPT_TAGS


def test_openai_formatting_defaults_to_role_content_tags(tmp_path):
    write_info(tmp_path, {"chat": {"file_name": "chat.json", "formatting": "openai"}})
    (spec,) = resolve(["chat"], tmp_path)
    assert spec.tags == OPENAI_TAGS
    assert spec.columns["messages"] == "messages"


def test_several_names_in_order(lf_data_dir):
    specs = resolve(["kitchen_sharegpt", "identity", "garden_lines"], lf_data_dir)
    assert [s.name for s in specs] == ["kitchen_sharegpt", "identity", "garden_lines"]


@pytest.mark.parametrize(
    ("use_ms", "where", "path"),
    [(False, "hf_hub", "example-org/garden-questions"), (True, "ms_hub", "example-org/garden-questions-ms")],
)
def test_hub_entries_choose_hf_or_modelscope(lf_data_dir, use_ms, where, path):
    (spec,) = resolve(["remote_only"], lf_data_dir, use_modelscope=use_ms)
    assert (spec.load_from, spec.path, spec.subset, spec.split) == (where, path, "zh", "train")


def test_use_modelscope_hub_environment_variable(lf_data_dir, monkeypatch):
    monkeypatch.setenv("USE_MODELSCOPE_HUB", "1")
    assert resolve(["remote_only"], lf_data_dir)[0].load_from == "ms_hub"
    monkeypatch.setenv("USE_MODELSCOPE_HUB", "0")
    assert resolve(["remote_only"], lf_data_dir)[0].load_from == "hf_hub"


def test_ranking_entry_is_a_pair_spec(lf_data_dir):
    spec = resolve(["pref_demo"], lf_data_dir)[0]
    assert spec.ranking and spec.columns["chosen"] == "chosen" and spec.columns["rejected"] == "rejected"
    assert not resolve(["garden_zh"], lf_data_dir)[0].ranking


def test_unknown_name_lists_close_ones(lf_data_dir):
    with pytest.raises(DataError) as err:
        resolve(["garden_z"], lf_data_dir)
    msg = str(err.value)
    assert "garden_z" in msg and "dataset_info.json" in msg and "'garden_zh'" in msg


def test_unknown_name_without_registry(tmp_path):
    with pytest.raises(DataError, match="missing or empty"):
        resolve(["anything"], tmp_path)


def test_a_file_path_is_a_dataset(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text('{"instruction": "a", "output": "b"}\n', encoding="utf-8")
    (spec,) = resolve([str(path)], tmp_path / "elsewhere")
    assert (spec.name, spec.load_from, spec.path) == ("mine", "file", str(path))
    # relative to dataset_dir too
    (spec,) = resolve(["mine.jsonl"], tmp_path)
    assert Path(spec.path) == tmp_path / "mine.jsonl"
    with pytest.raises(DataError, match="not found"):
        resolve(["nope.json"], tmp_path)


def test_looks_like_path():
    assert looks_like_path("data/x") and looks_like_path("x.json") and looks_like_path("x.parquet")
    assert not looks_like_path("alpaca_en_demo")


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        (
            {"file_name": "a.json", "formating": "sharegpt"},
            "unknown key 'formating'; did you mean 'formatting'",
        ),
        ({"file_name": "a.json", "formatting": "chatml"}, "'formatting' is 'chatml'; expected one of alpaca"),
        (
            {"file_name": "a.json", "columns": {"promt": "q"}},
            "unknown key 'columns.promt'; did you mean 'prompt'",
        ),
        ({"file_name": "a.json", "columns": {"prompt": 3}}, "'columns.prompt' must be a string"),
        ({"file_name": "a.json", "columns": ["prompt"]}, "'columns' must be an object"),
        (
            {"file_name": "a.json", "tags": {"rol_tag": "role"}},
            "unknown key 'tags.rol_tag'; did you mean 'role_tag'",
        ),
        ({"file_name": "a.json", "num_samples": 0}, "'num_samples' must be a positive integer"),
        ({"file_name": ""}, "'file_name' must be a non-empty string"),
        ({"file_name": 7}, "'file_name' must be a non-empty string"),
        ({"split": "train"}, "needs 'file_name', 'hf_hub_url' or 'ms_hub_url'"),
        ({"file_name": "../outside.json"}, "points outside the dataset directory"),
        ({"file_name": "/etc/passwd"}, "points outside the dataset directory"),
        ("a.json", "expected an object, got str"),
    ],
)
def test_bad_entries_name_the_entry_and_the_key(tmp_path, entry, fragment):
    write_info(tmp_path, {"mine": entry})
    with pytest.raises(DataError) as err:
        resolve(["mine"], tmp_path)
    msg = str(err.value)
    assert "dataset_info.json: entry 'mine'" in msg
    assert fragment in msg


def test_num_samples_is_kept(tmp_path):
    write_info(tmp_path, {"mine": {"file_name": "a.json", "num_samples": 2, "folder": "sub"}})
    (spec,) = resolve(["mine"], tmp_path)
    assert spec.num_samples == 2 and spec.folder == "sub"


def test_file_name_may_be_a_subfolder(tmp_path):
    write_info(tmp_path, {"mine": {"file_name": "parts/a.json"}})
    (spec,) = resolve(["mine"], tmp_path)
    assert Path(spec.path) == tmp_path / "parts" / "a.json"


def test_invalid_json_names_line_and_column(tmp_path):
    write_info(tmp_path, '{\n  "a": {"file_name": "a.json"},\n  "b": {"file_name" "b.json"}\n}')
    with pytest.raises(DataError) as err:
        read_registry(tmp_path)
    msg = str(err.value)
    assert "dataset_info.json: invalid JSON at line 3, column 21: Expecting ':' delimiter" in msg


def test_comments_get_a_hint(tmp_path):
    write_info(tmp_path, '{\n  // my data\n  "a": {"file_name": "a.json"}\n}')
    with pytest.raises(DataError) as err:
        read_registry(tmp_path)
    msg = str(err.value)
    assert "line 2" in msg and "JSON does not allow comments" in msg


def test_trailing_comma_gets_a_hint(tmp_path):
    write_info(tmp_path, '{\n  "a": {"file_name": "a.json"},\n}')
    with pytest.raises(DataError, match="trailing comma"):
        read_registry(tmp_path)


@pytest.mark.parametrize(("text", "got"), [("[]", "list"), ('"x"', "str"), ("3", "int")])
def test_registry_must_be_an_object(tmp_path, text, got):
    write_info(tmp_path, text)
    with pytest.raises(DataError, match=f"expected an object mapping dataset names to entries, got {got}"):
        read_registry(tmp_path)


def test_registry_not_utf8(tmp_path):
    (tmp_path / "dataset_info.json").write_bytes(b'{"a": {"file_name": "\xff.json"}}')
    with pytest.raises(DataError, match="not UTF-8"):
        read_registry(tmp_path)


def test_missing_registry_is_empty(tmp_path):
    assert read_registry(tmp_path) == {}


@pytest.mark.parametrize("key", ["hf_hub_url", "ms_hub_url"])
@pytest.mark.parametrize(
    "url", ["/etc", "./data", "../other", "~/data", "org/../../etc", "a/b/c", "org\\name", "", "  ", 5]
)
def test_a_hub_url_that_is_a_local_path_is_refused(tmp_path, key, url):
    """An uploaded dataset_info.json must not make a hub entry read a local directory (datasets.load_dataset
    reads a path that exists): a hub id is 'org/name' or 'name'."""
    write_info(tmp_path, {"bad": {key: url}})
    with pytest.raises(DataError, match=f"entry 'bad': '{key}' .*is not a hub dataset id"):
        resolve(["bad"], tmp_path, use_modelscope=key == "ms_hub_url")


@pytest.mark.parametrize("url", ["org/name", "tatsu-lab/alpaca", "squad", "BelleGroup/train_0.5M_CN"])
def test_hub_ids_are_accepted(tmp_path, url):
    write_info(tmp_path, {"ok": {"hf_hub_url": url}})
    assert resolve(["ok"], tmp_path)[0].path == url


def test_a_registry_saved_with_a_bom_is_read(tmp_path):
    """Windows editors save UTF-8 with a byte-order mark; data files with one are read, so is the registry."""
    (tmp_path / "a.json").write_text(json.dumps([{"instruction": "q", "output": "a"}]))
    (tmp_path / "dataset_info.json").write_bytes(
        b"\xef\xbb\xbf" + json.dumps({"a": {"file_name": "a.json"}}).encode()
    )
    assert resolve(["a"], tmp_path)[0].path == str(tmp_path / "a.json")
