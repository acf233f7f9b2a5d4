"""The tutorial end to end in a real browser: identity, register a dataset, train builtin:tiny from the
Train tab (progress and loss plot reach the end), reload re-attaches, a second Start is refused,
evaluate (accuracy), chat with the result, export (files), Stop, the language switch, path confinement.

One server and one workspace for the module; the tests run in file order and build on each other.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser
RUN = "tiny_run"
STOP_RUN = "tiny_stop"


def expect(locator):
    from playwright.sync_api import expect as _expect

    _expect.set_options(timeout=30_000)
    return _expect(locator)


def go(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def field(page, elem_id: str):
    return page.locator(f"#{elem_id} input, #{elem_id} textarea").first


def fill(page, elem_id: str, value: object) -> None:
    box = field(page, elem_id)
    box.fill(str(value))
    box.blur()


def pick(page, elem_id: str, *labels: str) -> None:
    """Choose options of a gradio dropdown by the start of their label."""
    for label in labels:
        field(page, elem_id).click()
        page.locator(f'#{elem_id} [role="option"][aria-label^="{label}"]').first.click()
    page.keyboard.press("Escape")


def shot(page, shots: Path, name: str) -> None:
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)


def test_data_tab_identity_upload_check_split_register(page, workspace, shots, tmp_path):
    fill(page, "identity-name", "小调 (Tuney)")
    fill(page, "identity-author", "tuneboard")
    page.locator("#identity-fill").click()
    expect(page.locator("#identity-msg")).to_contain_text("filled")
    assert "小调 (Tuney)" in (workspace / "data" / "identity.json").read_text(encoding="utf-8")

    # the tutorial's own dataset, uploaded as a new file (the demo triage data under another name)
    records = json.loads((workspace / "data" / "triage_train.json").read_text(encoding="utf-8"))
    upload = tmp_path / "nurse_demo.json"
    upload.write_text(json.dumps(records[:200], ensure_ascii=False), encoding="utf-8")
    page.locator("#upload input[type=file]").set_input_files(str(upload))
    expect(page.locator("#data-msg")).to_contain_text("data/nurse_demo.json")
    expect(field(page, "data-path")).to_have_value("data/nurse_demo.json")

    page.locator("#data-check").click()
    expect(page.locator("#data-msg")).to_contain_text("no problems")
    expect(page.locator("#check-summary")).to_contain_text("200")
    expect(page.locator("#check-summary")).to_contain_text("p50")

    fill(page, "data-path", "data/nurse_demo.json")
    page.locator("#data-split").click()
    expect(page.locator("#data-msg")).to_contain_text("nurse_demo_test")
    expect(page.locator("#registry")).to_contain_text("nurse_demo_train")
    info = json.loads((workspace / "data" / "dataset_info.json").read_text(encoding="utf-8"))
    assert info["nurse_demo_train"] == {"file_name": "nurse_demo_train.json"}
    assert "nurse_demo_test" in info

    page.get_by_text("4. Preview").click()
    pick(page, "preview-dataset", "nurse_demo_train")
    page.locator("#preview-run").click()
    expect(page.locator("#preview-out mark").first).to_be_visible()
    shot(page, shots, "data")


def test_paths_outside_the_workspace_are_refused(page, workspace, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.json").write_text('[{"instruction": "a", "output": "b"}]')
    (workspace / "escape").symlink_to(outside, target_is_directory=True)
    for path in (str(outside / "secret.json"), "../outside/secret.json", "escape/secret.json"):
        fill(page, "data-path", path)
        page.locator("#data-check").click()
        expect(page.locator("#data-msg")).to_contain_text("outside the workspace")
    fill(page, "identity-name", "x")
    fill(page, "identity-author", "y")
    fill(page, "identity-file", "escape/secret.json")
    page.locator("#identity-fill").click()
    expect(page.locator("#identity-msg")).to_contain_text("outside the workspace")
    assert (outside / "secret.json").read_text() == '[{"instruction": "a", "output": "b"}]'
    (workspace / "escape").unlink()


def _train_form(page, run: str, max_steps: int) -> None:
    pick(page, "ft", "lora")  # builtin:tiny opens on full fine-tuning (the demo's settings)
    go(page, "Train")
    pick(page, "train-datasets", "identity (", "nurse_demo_train (")
    fill(page, "lr", "1e-3")
    fill(page, "max-steps", max_steps)
    fill(page, "max-samples", 40)
    fill(page, "cutoff", 128)
    fill(page, "batch", 2)
    fill(page, "accum", 1)
    page.get_by_text("More settings").click()
    fill(page, "logging-steps", 2)
    fill(page, "run-name", run)
    field(page, "run-name").press("End")
    fill(page, "config-path", f"configs/{run}.yaml")


def test_train_reattach_refuse_and_finish(page, browser, server, workspace, shots):
    _train_form(page, RUN, 20)
    page.locator("#train-preview").click()
    expect(page.locator("#train-command")).to_contain_text(f"tuneboard train configs/{RUN}.yaml")
    page.locator("#train-start").click()
    expect(page.locator("#train-msg")).to_contain_text("started")
    expect(page.locator("#train-status")).to_contain_text("running")
    config = (workspace / "configs" / f"{RUN}.yaml").read_text()
    assert "max_steps: 20" in config and "dataset: identity,nurse_demo_train" in config

    # a reloaded page finds the running job; a second Start is refused
    page.reload()
    page.wait_for_selector("#tab-data", state="attached")
    go(page, "Train")
    expect(page.locator("#train-status")).to_contain_text("running", timeout=10_000)
    expect(page.locator("#train-log")).not_to_be_empty()
    _train_form(page, "second_run", 20)
    page.locator("#train-start").click()
    expect(page.locator("#train-msg")).to_contain_text("is running")
    assert not (workspace / "configs" / "second_run.yaml").exists()

    expect(page.locator("#progress-text")).to_contain_text("step 20 / 20 (100%)", timeout=240_000)
    expect(page.locator("#train-status")).to_contain_text("finished", timeout=30_000)
    out = workspace / "saves" / "builtin-tiny" / "lora" / RUN
    assert (out / "adapter_model.safetensors").exists()
    rows = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 20
    expect(page.locator("#loss-plot .mark-line path").first).to_be_visible()
    assert page.locator("#loss-plot .mark-line path").count() >= 2  # raw and smoothed loss
    bar = page.locator("#train-progress .tb-progress")
    assert bar.get_attribute("data-step") == "20" and bar.get_attribute("data-total") == "20"
    shot(page, shots, "train")


def _choose_output(page, label: str) -> None:
    pick(page, "ft", "lora")
    page.locator("#refresh-outputs").click()
    page.wait_for_timeout(800)
    pick(page, "output", label)
    expect(field(page, "output")).to_have_value(label)


def test_evaluate_shows_accuracy_and_predictions(page, workspace, shots):
    _choose_output(page, RUN)
    go(page, "Evaluate")
    expect(page.locator("#eval-datasets")).to_contain_text(
        "nurse_demo_test"
    )  # the user's split, pre-selected
    expect(page.locator("#eval-datasets")).not_to_contain_text("triage_test")
    fill(page, "eval-max-samples", 10)
    fill(page, "eval-max-new", 8)
    page.locator("#eval-start").click()
    expect(page.locator("#eval-msg")).to_contain_text("started")
    expect(page.locator("#eval-status")).to_contain_text("finished", timeout=180_000)
    expect(page.locator("#eval-metrics")).to_contain_text("predict_accuracy")
    expect(page.locator("#eval-preds")).to_contain_text("label")
    expect(page.locator("#eval-preds")).to_contain_text("input (prompt)")
    results = list((workspace / "saves" / "builtin-tiny" / "lora").glob("eval_*/predict_results.json"))
    assert results and "predict_accuracy" in json.loads(results[0].read_text())
    shot(page, shots, "evaluate")


def test_chat_with_the_trained_adapter(page, shots):
    _choose_output(page, RUN)
    go(page, "Chat")
    pick(page, "chat-backend", "vllm")  # no vLLM and no GPU here: a clear refusal, nothing loaded
    page.locator("#chat-load").click()
    expect(page.locator("#chat-info")).to_contain_text("infer_backend: vllm needs the vllm package")
    pick(page, "chat-backend", "huggingface")
    page.locator("#chat-load").click()
    expect(page.locator("#chat-info")).to_contain_text(
        f"Loaded: builtin:tiny + saves/builtin-tiny/lora/{RUN}", timeout=120_000
    )
    fill(page, "max-new", 24)
    field(page, "chat-input").fill("你是谁？")
    field(page, "chat-input").press("Enter")
    bot = page.locator('#chatbot [data-testid="bot"]').last
    expect(bot).to_be_visible(timeout=60_000)
    expect(bot).to_have_text(re.compile(r"\S"), timeout=60_000)
    shot(page, shots, "chat")
    page.locator("#chat-unload").click()
    expect(page.locator("#chat-info")).to_contain_text("No model loaded")


def test_export_writes_a_model_directory(page, workspace, shots):
    _choose_output(page, RUN)
    go(page, "Export")
    expect(field(page, "export-dir")).to_have_value(f"exports/builtin-tiny-{RUN}")
    page.locator("#export-start").click()
    expect(page.locator("#export-msg")).to_contain_text("started")
    expect(page.locator("#export-status")).to_contain_text("finished", timeout=180_000)
    expect(page.locator("#export-files")).to_contain_text("model.safetensors")
    expect(page.locator("#export-files")).to_contain_text("Modelfile")
    assert (workspace / "exports" / f"builtin-tiny-{RUN}" / "config.json").exists()
    shot(page, shots, "export")


def test_stop_saves_a_checkpoint(page, workspace):
    _train_form(page, STOP_RUN, 400)
    page.locator("#train-start").click()
    expect(page.locator("#train-status")).to_contain_text("running")
    expect(page.locator("#train-progress .tb-progress")).not_to_have_attribute(
        "data-step", "0", timeout=120_000
    )
    page.locator("#train-stop").click()
    expect(page.locator("#train-msg")).to_contain_text("Stop requested")
    expect(page.locator("#train-status")).to_contain_text("stopped", timeout=120_000)
    out = workspace / "saves" / "builtin-tiny" / "lora" / STOP_RUN
    assert list(out.glob("checkpoint-*/trainer_state.json"))
    assert not (out / "all_results.json").exists()


def test_language_switch(page, shots):
    pick(page, "lang", "中文")
    expect(page.get_by_role("tab", name="训练")).to_be_visible()
    expect(page.locator("#identity-fill")).to_have_text("填入")
    go(page, "训练")
    shot(page, shots, "train-zh")
    pick(page, "lang", "English")
    expect(page.get_by_role("tab", name="Train")).to_be_visible()


def test_environment_tab_reports_the_machine_and_the_estimate(page, shots):
    """The tutorial's step 2: the machine report and the memory estimate of the top bar's model, per method."""
    pick(page, "model", "builtin:tiny")
    go(page, "Environment")
    pick(page, "env-method", "full")
    page.locator("#env-check").click()
    expect(page.locator("#env-report")).to_contain_text("CPU")
    expect(page.locator("#env-report")).to_contain_text("torch")
    expect(page.locator("#env-estimate")).to_contain_text("Memory estimate: full")
    shot(page, shots, "env")
    fill(page, "model", "no/such-model-here")
    page.locator("#env-check").click()
    expect(page.locator("#env-estimate")).to_contain_text("cannot size")
