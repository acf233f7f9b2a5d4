"""The Data, Evaluate and Export tabs' helpers: checks that name records (and say so in the message), empty
tables with their headers on an error, messages shown again in the other language, the Evaluate picker
following the user's own test split, the predictions beside their prompts, the empty-predictions warning."""

from __future__ import annotations

import json

import pytest

from tuneboard.data.registry import InvalidJSON
from tuneboard.webui.common import Ctx, default_pick, error_text, in_every_language, refresh_pickers
from tuneboard.webui.paths import Workspace
from tuneboard.webui.tab_data import check_message, check_tables, shown
from tuneboard.webui.tab_eval import results

REPORT = {
    "formatting": "alpaca", "records": 6, "valid": 6, "problems": [], "duplicates": 1, "empty_outputs": 1,
    "duplicate_records": [{"record": 2, "first": 0, "excerpt": "What is 2+2?"}],
    "empty_records": [{"record": 3, "excerpt": "Say nothing"}],
    "with_system": 0, "multi_turn": 0, "unmapped_fields": {},
}  # fmt: skip


def test_check_names_records_and_never_says_no_problems_while_it_counts_some():
    _, named = check_tables("en", REPORT)
    assert named.values.tolist() == [
        ["record 2: duplicate of record 0 (“What is 2+2?”)"],
        ["record 3: empty reply (“Say nothing”)"],
    ]
    _, named = check_tables("zh", REPORT)
    assert named.values.tolist()[0] == ["第 2 条记录：与第 0 条重复（“What is 2+2?”）"]
    msg = check_message("en", "data/d.json", REPORT, "")
    assert msg.startswith("⚠️") and "no problems" not in msg and "1 duplicates and 1 empty replies" in msg
    clean = {**REPORT, "duplicates": 0, "empty_outputs": 0, "duplicate_records": [], "empty_records": []}
    assert check_message("en", "d.json", clean, "") == "✅ d.json: no problems found."
    assert check_message("en", "d.json", {**REPORT, "problems": ["record 1: x"]}, "").startswith("❌")


def test_an_error_leaves_empty_tables_with_their_headers():
    summary, named = check_tables("zh", None)
    assert list(summary.columns) == ["项目", "值"] and summary.empty
    assert list(named.columns) == ["问题"] and named.empty


def test_invalid_json_is_worded_in_the_language_and_shown_again_after_the_switch():
    exc = InvalidJSON("/ws/data/bad.json", 2, 21, "Expecting ',' delimiter", "comma")
    assert error_text("zh", exc) == (
        "❌ /ws/data/bad.json：第 2 行第 21 列不是有效的 JSON（Expecting &#x27;,&#x27; delimiter）；"
        "是否多了结尾逗号或缺少值？"
    )
    seen = {"msg": in_every_language(lambda lg: error_text(lg, exc)), "tables": True, "report": None}
    msg, summary, _ = shown("zh-CN", seen)
    assert "第 2 行" in msg and list(summary.columns) == ["项目", "值"]
    msg, summary, named = shown("en", {**seen, "report": REPORT})
    assert "line 2, column 21" in msg and named.values.tolist()[1] == [
        "record 3: empty reply (“Say nothing”)"
    ]
    msg, summary, _ = shown("en", {**seen, "tables": False})
    assert summary == {"__type__": "update"}  # a split's message leaves the tables alone
    assert shown("en", None) == ({"__type__": "update"},) * 3


def test_evaluate_picks_the_users_newest_test_split(tmp_path):
    bundled = [("identity (91)", "identity"), ("triage_test (40)", "triage_test")]
    assert default_pick(bundled, "test") == ["triage_test"]
    own = [*bundled, ("a_test (5)", "a_test"), ("b_train (9)", "b_train"), ("b_test (2)", "b_test")]
    assert default_pick(own, "test") == ["b_test"]
    assert default_pick(own, "train") == []

    (tmp_path / "data").mkdir()
    info = {name: {"file_name": f"{name}.json"} for name in ("identity", "triage_test", "mine_test")}
    (tmp_path / "data" / "dataset_info.json").write_text(json.dumps(info))
    ctx = Ctx(ws=Workspace(tmp_path), runner=None, ui=None)
    ctx.pickers = [("train", "train"), ("preview", "any"), ("eval", "test"), ("chosen", "chosen")]
    before = [["identity", "gone"], "identity", ["triage_test"], False]
    train, preview, evaluate, chosen = refresh_pickers(ctx, "data", before)
    assert train["value"] == ["identity"] and preview["value"] == "identity"
    assert evaluate["value"] == ["mine_test"] and chosen is False  # not set by hand: follows the new split
    *_, evaluate, chosen = refresh_pickers(ctx, "data", [[], None, ["triage_test"], True])
    assert evaluate["value"] == ["triage_test"] and chosen is True  # picked by hand: kept


@pytest.fixture
def predictions(tmp_path):
    rows = [{"prompt": "<s>user\n" + "x" * 400 + "Q1?", "predict": "", "label": "A"}]
    rows += [{"prompt": "Q2?", "predict": " ", "label": "B"}, {"prompt": "Q3?", "predict": "C", "label": "C"}]
    (tmp_path / "generated_predictions.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (tmp_path / "predict_results.json").write_text(json.dumps({"predict_accuracy": 33.3}))
    return tmp_path


def test_predictions_beside_their_prompts_and_a_warning_when_most_are_empty(predictions):
    _, preds, warning = results("en", str(predictions))
    assert list(preds.columns) == ["input (prompt)", "label (expected)", "prediction", "match"]
    first = preds.values.tolist()[0]
    assert first[0].startswith("…x") and first[0].endswith("Q1?") and len(first[0]) == 301
    assert preds.values.tolist()[2] == ["Q3?", "C", "C", "✓"]
    assert warning.startswith("⚠️ 2 of 3 predictions are empty") and "Train longer" in warning
    _, preds, warning = results("zh", str(predictions))
    assert preds.columns[0] == "输入（提示）" and "3 条预测中有 2 条为空" in warning
    lines = [{"prompt": "q", "predict": "A", "label": "A"}] * 2 + [
        {"prompt": "q", "predict": "", "label": "A"}
    ]
    (predictions / "generated_predictions.jsonl").write_text("\n".join(json.dumps(r) for r in lines))
    assert results("en", str(predictions))[2] == ""  # one of three: no warning
    assert results("en", None)[2] == ""
