"""The Train tab in a real browser (issues 21, 17, 16): builtin:tiny opens on the demo's settings and says
why, a method change suggests its learning rate unless one was typed, the stage and method options reach
the started config, and Start -> Stop -> pick the run under Resume -> Start goes on in the same folder,
listed in the run list and picked in the top bar when it finishes.

Shares test_browser.py's server and workspace (conftest); uses only the bundled identity dataset.
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.browser
RUN = "tiny_resume"


def expect(locator):
    from playwright.sync_api import expect as _expect

    _expect.set_options(timeout=30_000)
    return _expect(locator)


def field(page, elem_id: str):
    return page.locator(f"#{elem_id} input, #{elem_id} textarea").first


def fill(page, elem_id: str, value: object) -> None:
    box = field(page, elem_id)
    box.fill(str(value))
    box.blur()


def pick(page, elem_id: str, label: str) -> None:
    field(page, elem_id).click()
    page.locator(f'#{elem_id} [role="option"][aria-label^="{label}"]').first.click()
    page.keyboard.press("Escape")


def test_defaults_that_learn_and_the_options_in_the_config(page):
    page.get_by_role("tab", name="Train").click()
    # builtin:tiny starts from random weights: the demo's recipe, and a line saying so
    expect(field(page, "ft")).to_have_value("full")
    expect(field(page, "lr")).to_have_value("5e-4")
    expect(field(page, "epochs")).to_have_value("10")
    expect(field(page, "weight-decay")).to_have_value("0.1")
    expect(page.locator("#train-note")).to_contain_text("random weights")
    pick(page, "ft", "lora")
    expect(field(page, "lr")).to_have_value("1e-3")
    # a real model: LoRA's rate; a typed rate survives a method change
    fill(page, "model", "Qwen/Qwen2.5-0.5B-Instruct")
    expect(page.locator("#train-note")).to_contain_text("lora: 2e-4")
    expect(field(page, "lr")).to_have_value("2e-4")
    pick(page, "ft", "full")
    expect(field(page, "lr")).to_have_value("1e-5")
    fill(page, "lr", "3e-5")
    pick(page, "ft", "freeze")
    expect(page.locator("#train-note")).to_contain_text("freeze: 1e-5")
    expect(field(page, "lr")).to_have_value("3e-5")
    pick(page, "model", "builtin:tiny")
    expect(field(page, "ft")).to_have_value("full")
    expect(field(page, "lr")).to_have_value("5e-4")

    # stage and method options reach the config; a later edit hides the preview
    pick(page, "ft", "lora")
    pick(page, "train-datasets", "identity (")
    expect(page.locator("#pref-beta")).to_be_hidden()
    pick(page, "stage", "dpo")
    expect(page.locator("#pref-beta")).to_be_visible()
    page.get_by_text("LoRA", exact=True).click()
    page.locator("#use-dora input").check()
    fill(page, "loraplus", 16)
    page.locator("#train-preview").click()
    command = page.locator("#train-command")
    for line in (
        "stage: dpo",
        "pref_beta: 0.1",
        "pref_loss: sigmoid",
        "use_dora: true",
        "loraplus_lr_ratio: 16",
    ):
        expect(command).to_contain_text(line)
    fill(page, "cutoff", 64)
    expect(command).to_be_hidden()


def test_stop_then_resume_the_picked_run_in_its_folder(page, workspace, shots):
    page.get_by_role("tab", name="Train").click()
    pick(page, "train-datasets", "identity (")
    for elem_id, value in (("max-steps", 400), ("max-samples", 40), ("cutoff", 96), ("batch", 2)):
        fill(page, elem_id, value)
    page.get_by_text("More settings").click()
    fill(page, "logging-steps", 1)
    fill(page, "run-name", RUN)
    fill(page, "config-path", f"configs/{RUN}.yaml")
    page.locator("#train-start").click()
    expect(page.locator("#train-status")).to_contain_text("running")
    expect(page.locator("#train-progress .tb-progress")).not_to_have_attribute(
        "data-step", "0", timeout=120_000
    )
    page.locator("#train-stop").click()
    expect(page.locator("#train-status")).to_contain_text("stopped", timeout=120_000)
    expect(page.locator("#train-msg")).not_to_contain_text("Stop requested")  # one status line
    out = workspace / "saves" / "builtin-tiny" / "full" / RUN
    stopped = max(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))
    runs = page.locator("#train-runs")
    expect(runs).to_contain_text(RUN)
    expect(runs).to_contain_text("stopped")

    before = set(out.parent.glob("train_*"))  # other tests' runs share this workspace
    fill(page, "max-steps", stopped + 3)
    pick(page, "resume-run", RUN)
    page.locator("#train-start").click()
    expect(page.locator("#train-msg")).to_contain_text("started")
    expect(field(page, "resume-run")).to_have_value("")  # the next Start is a fresh run
    # the preview shows what was started: the picked run's folder, resumed
    expect(page.locator("#train-command")).to_contain_text(f"output_dir: saves/builtin-tiny/full/{RUN}")
    expect(page.locator("#train-command")).to_contain_text("resume_from_checkpoint")
    expect(page.locator("#train-status")).to_contain_text("finished", timeout=240_000)
    expect(page.locator("#train-status")).to_contain_text("average loss")
    expect(page.locator("#loss-legend")).to_contain_text("smoothed")
    expect(page.locator("#train-msg")).to_be_empty()
    steps = [json.loads(line)["step"] for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    assert steps[-1] == stopped + 3 and steps.count(stopped + 1) == 1
    assert set(out.parent.glob("train_*")) == before  # no new folder: it went on in its own
    expect(runs).to_contain_text("finished")
    expect(runs).to_contain_text(f"{stopped + 3} / {stopped + 3}")
    expect(field(page, "output")).to_have_value(RUN)  # Evaluate, Chat and Export start from it
    page.screenshot(path=str(shots / "train-resumed.png"), full_page=True)
