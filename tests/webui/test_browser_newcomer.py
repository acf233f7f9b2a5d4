"""Issue 21's "done when", walked in a real browser in Chinese, as a newcomer would: fill the identity, upload
a file of triage records (one duplicate, one empty reply) made here, check it (both named by record), split and
register it, train builtin:tiny from the form's own defaults, stop and resume that run, see it finished in the
run list, evaluate it on the file's own test split (run and split pre-selected) to the demo's accuracy, chat
with it and export it.

Uses conftest's server and workspace and test_browser.py's helpers.
"""

from __future__ import annotations

import json
import re

import pytest
from test_browser import expect, field, fill, go, pick, shot

pytestmark = pytest.mark.browser
NAME = "triage_mine"
N = 200  # triage records uploaded: half of the demo's 402, for time (330 steps; ~7 min on 2 busy cores)
# percent of the file's test split (20 records): 18 of 20. The demo's 402 records reach 100 on triage_test with
# the same settings; these 200 reach 90 (two A/C records answered D)
MIN_ACCURACY = 90.0


def upload_file(workspace, tmp_path):
    """N records of the bundled triage task, then a copy of record 3 and a record with an empty reply."""
    records = json.loads((workspace / "data" / "triage_train.json").read_text(encoding="utf-8"))
    mine = [*records[:N], records[3], {**records[N], "output": ""}]
    path = tmp_path / f"{NAME}.json"
    path.write_text(json.dumps(mine, ensure_ascii=False), encoding="utf-8")
    return path, records[3]


def test_a_newcomer_trains_evaluates_chats_and_exports_in_chinese(page, workspace, shots, tmp_path):
    pick(page, "lang", "中文")
    expect(page.get_by_role("tab", name="训练")).to_be_visible()
    expect(page.locator("#identity-fill")).to_have_text("填入")

    # 1. identity
    fill(page, "identity-name", "小调 (Tuney)")
    fill(page, "identity-author", "tuneboard")
    page.locator("#identity-fill").click()
    expect(page.locator("#identity-msg")).to_contain_text("已将名称“小调 (Tuney)”和作者“tuneboard”填入")

    # 2. add a file, check it: the duplicate and the empty reply are named by record
    upload, repeated = upload_file(workspace, tmp_path)
    page.locator("#upload input[type=file]").set_input_files(str(upload))
    msg = page.locator("#data-msg")
    expect(msg).to_contain_text(f"已复制到 data/{NAME}.json")
    expect(field(page, "data-path")).to_have_value(f"data/{NAME}.json")
    page.locator("#data-check").click()
    expect(msg).to_contain_text("1 条重复、1 条空回复")
    expect(msg).not_to_contain_text("未发现问题")
    named = page.locator("#check-problems")
    expect(named).to_contain_text(f"第 {N} 条记录：与第 3 条重复")
    expect(named).to_contain_text(f"第 {N + 1} 条记录：回复为空")
    expect(page.locator("#check-summary")).to_contain_text(str(N + 2))

    # 3. split and register: the duplicate's copies stay in the train part
    page.locator("#data-split").click()
    expect(msg).to_contain_text(f"已注册为“{NAME}_train”和“{NAME}_test”")
    expect(msg).to_contain_text(f"有 2 条记录出现不止一次（第 3, {N} 条）")
    test_part = json.loads((workspace / "data" / f"{NAME}_test.json").read_text(encoding="utf-8"))
    assert test_part and repeated not in test_part
    expect(page.locator("#registry")).to_contain_text(f"{NAME}_test")
    shot(page, shots, "newcomer-data-zh")

    # 4. train with the form's defaults for builtin:tiny (the demo's recipe); only the datasets are picked
    go(page, "训练")
    expect(page.locator("#train-note")).to_contain_text("builtin:tiny 从随机权重开始")
    expect(field(page, "ft")).to_have_value("full")
    expect(field(page, "lr")).to_have_value("5e-4")
    expect(field(page, "epochs")).to_have_value("10")
    pick(page, "train-datasets", "identity (", f"{NAME}_train (")
    run = field(page, "run-name").input_value()
    assert re.fullmatch(r"train_\S+", run), run
    page.locator("#train-start").click()
    expect(page.locator("#train-msg")).to_contain_text("已开始：tuneboard train")
    status = page.locator("#train-status")
    expect(status).to_contain_text("训练进行中")
    out = workspace / "saves" / "builtin-tiny" / "full" / run
    config = (workspace / "configs" / f"{run}.yaml").read_text(encoding="utf-8")
    for line in ("finetuning_type: full", "num_train_epochs: 10", f"dataset: identity,{NAME}_train"):
        assert line in config, config
    assert re.search(r"learning_rate: (5\.0e-0?4|0\.0005)\b", config), config

    # 5. stop mid-run, then pick it under Resume and Start: it goes on in its own folder
    expect(page.locator("#train-progress .tb-progress")).not_to_have_attribute(
        "data-step", "0", timeout=120_000
    )
    page.locator("#train-stop").click()
    expect(status).to_contain_text("训练已停止", timeout=120_000)
    runs = page.locator("#train-runs")
    expect(runs).to_contain_text(run)
    expect(runs).to_contain_text("已停止")
    stopped = max(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))
    pick(page, "resume-run", run)
    page.locator("#train-start").click()
    expect(page.locator("#train-msg")).to_contain_text("已开始")
    expect(page.locator("#train-command")).to_contain_text(f"output_dir: saves/builtin-tiny/full/{run}")
    expect(page.locator("#train-command")).to_contain_text("resume_from_checkpoint")
    expect(status).to_contain_text("训练完成", timeout=600_000)
    expect(status).to_contain_text("平均损失")

    # 6. the run list shows it finished, all its steps done
    logged = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    total = logged[-1]["total_steps"]
    assert 0 < stopped < total and logged[-1]["step"] == total
    expect(runs).to_contain_text("已完成")
    expect(runs).to_contain_text(f"{total} / {total}")
    shot(page, shots, "newcomer-train-zh")

    # 7. evaluate: the trained run and the file's own test split are already picked
    go(page, "评估")
    expect(field(page, "output")).to_have_value(run)
    expect(page.locator("#eval-datasets")).to_contain_text(f"{NAME}_test")
    expect(page.locator("#eval-datasets")).not_to_contain_text("triage_test")
    page.locator("#eval-start").click()
    expect(page.locator("#eval-msg")).to_contain_text("已开始：tuneboard eval")
    expect(page.locator("#eval-status")).to_contain_text("评估完成", timeout=600_000)
    row = page.locator("#eval-metrics").get_by_role("row", name=re.compile(r"^predict_accuracy "))
    expect(row).to_be_visible()
    shown = float(row.get_by_role("gridcell").last.inner_text())
    results = sorted(out.parent.glob("eval_*/predict_results.json"), key=lambda p: p.stat().st_mtime)
    accuracy = json.loads(results[-1].read_text())["predict_accuracy"]
    assert shown == pytest.approx(accuracy, abs=0.01)
    assert accuracy >= MIN_ACCURACY, f"accuracy {accuracy} on {len(test_part)} test records"
    shot(page, shots, "newcomer-eval-zh")

    # 8. chat with it
    go(page, "对话")
    page.locator("#chat-load").click()
    expect(page.locator("#chat-info")).to_contain_text("已加载：", timeout=120_000)
    expect(page.locator("#chat-info")).to_contain_text(run)
    field(page, "chat-input").fill("你是谁？")
    field(page, "chat-input").press("Enter")
    bot = page.locator('#chatbot [data-testid="bot"]').last
    expect(bot).to_have_text(re.compile(r"\S"), timeout=60_000)
    shot(page, shots, "newcomer-chat-zh")
    page.locator("#chat-unload").click()
    expect(page.locator("#chat-info")).to_contain_text("尚未加载模型")

    # 9. export it
    go(page, "导出")
    expect(field(page, "export-dir")).to_have_value(f"exports/builtin-tiny-{run}")
    page.locator("#export-start").click()
    expect(page.locator("#export-msg")).to_contain_text("已开始：tuneboard export")
    expect(page.locator("#export-status")).to_contain_text("导出完成", timeout=300_000)
    expect(page.locator("#export-files")).to_contain_text("model.safetensors")
    assert (workspace / "exports" / f"builtin-tiny-{run}" / "config.json").exists()
    shot(page, shots, "newcomer-export-zh")
