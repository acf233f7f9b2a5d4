"""The tabs' pure helpers: what a preview, a check report, the loss plot, the progress bar, the eval
results and the export listing look like (no browser)."""

from __future__ import annotations

import json

from tuneboard.webui.tab_data import check_tables, preview_html
from tuneboard.webui.tab_eval import results
from tuneboard.webui.tab_export import default_dir, files_table
from tuneboard.webui.tab_train import loss_frame, progress_html


def test_preview_marks_trained_spans_and_escapes_html():
    text = "--- record 0: 5 tokens, 2 trained (between [[ and ]])\n<|im_start|>user\nhi<b> [[yo\nx]]"
    out = preview_html(text)
    assert "<b>--- record 0: 5 tokens, 2 trained</b>" in out
    assert "&lt;|im_start|&gt;" in out and "hi&lt;b&gt;" in out
    assert '<mark class="tb-trained">yo\nx</mark>' in out


def test_check_report_as_localized_tables():
    report = {
        "formatting": "alpaca", "records": 3, "valid": 2, "problems": ["record 2: no output"], "duplicates": 0,
        "empty_outputs": 0, "with_system": 1, "multi_turn": 0, "unmapped_fields": {"extra": 2},
        "tokens": {"p50": 10, "p90": 20, "max": 30, "over_cutoff": 1, "cutoff_len": 16},
    }  # fmt: skip
    summary, problems = check_tables("zh", report)
    assert list(summary.columns) == ["项目", "值"]
    assert ("超过截断长度（16）", "1") in set(map(tuple, summary.values))
    assert problems.values.tolist() == [["record 2: no output"]]
    assert not any("tools" in k or "工具" in k for k, _ in summary.values)
    summary, _ = check_tables("en", {**report, "with_tools": 2, "tools_rendered": False})
    row = ("records with tools (function definitions)", "2 · this template does NOT render them: trained "
           "without them (qwen, qwen3, qwen3_nothink do)")  # fmt: skip
    assert row in set(map(tuple, summary.values))
    summary, _ = check_tables("zh", {**report, "with_tools": 1, "tools_rendered": True})
    assert ("带 tools（函数定义）的记录", "1 · 所选模板会把它们写入提示") in set(map(tuple, summary.values))


def test_loss_frame_and_progress(tmp_path):
    assert loss_frame("en", None) is None and loss_frame("en", str(tmp_path)) is None
    rows = [{"step": 2, "loss": 3.0}, {"step": 4, "loss": 2.0}, {"step": 4, "eval_loss": 2.5}]
    (tmp_path / "trainer_log.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n{half")
    frame = loss_frame("en", str(tmp_path))
    assert sorted(set(frame["curve"])) == ["eval loss", "loss", "smoothed"]
    assert len(frame) == 5
    bar = progress_html("en", {"step": 5, "total": 20, "state": "running", "remaining": "00:30"})
    assert 'data-step="5" data-total="20"' in bar and "width:25.0%" in bar and "00:30 left" in bar
    assert "step 0 / ? (0%)" in progress_html("en", {})


def test_eval_results_and_export_listing(tmp_path):
    (tmp_path / "predict_results.json").write_text(
        json.dumps({"predict_accuracy": 50.0, "predict_samples": 2})
    )
    (tmp_path / "generated_predictions.jsonl").write_text(
        json.dumps({"prompt": "p", "predict": "A", "label": "A"})
        + "\n"
        + json.dumps({"predict": "B", "label": "C"})
    )
    metrics, preds, _ = results("en", str(tmp_path))
    assert metrics.values.tolist() == [["predict_accuracy", "50"], ["predict_samples", "2"]]
    assert preds.values.tolist() == [["p", "A", "A", "✓"], ["", "C", "B", "✗"]]
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "model.safetensors").write_bytes(b"x" * 2048)
    listing = files_table("en", str(tmp_path))
    assert ["sub/model.safetensors", "2.0 KB"] in listing.values.tolist()
    assert files_table("en", None).empty
    assert default_dir("builtin:tiny", "run/checkpoint-5") == "exports/builtin-tiny-run-checkpoint-5"


def test_the_tab_bar_holds_only_tabs(tmp_path):
    """gradio 6 places a tab opened for the first time by its position among the tab bar's children: a state
    built between two tabs made Export's button read "Evaluate" once Evaluate had been opened."""
    import gradio as gr

    from tuneboard.webui.app import build_app

    (tmp_path / "data").mkdir()
    tabs = [b for b in build_app(tmp_path).blocks.values() if isinstance(b, gr.Tabs)]
    assert tabs
    for bar in tabs:
        assert [type(c).__name__ for c in bar.children if not isinstance(c, gr.Tab)] == []
