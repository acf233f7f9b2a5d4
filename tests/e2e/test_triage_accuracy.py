"""The demo's promise: full fine-tuning of builtin:tiny on the bundled triage data reaches >= 95% exact-match
accuracy on its test split, measured with `tuneboard eval` (the demo's own config)."""

from __future__ import annotations

import json

import pytest

from tuneboard.cli.main import main as tuneboard
from tuneboard.demo import TRAIN_YAML

pytestmark = pytest.mark.slow


def test_demo_config_reaches_95_percent(workspace):
    root = workspace / "triage"
    root.mkdir()
    cfg = root / "train.yaml"
    cfg.write_text(TRAIN_YAML.format(out=root), encoding="utf-8")
    data = f"dataset_dir={workspace / 'data'}"
    assert tuneboard(["train", str(cfg), data, "plot_loss=false"]) == 0
    run = root / "saves" / "tiny-full"
    argv = ["eval", str(cfg), data, f"model_name_or_path={run}", "eval_dataset=triage_test"]
    assert (
        tuneboard([*argv, f"output_dir={root / 'eval'}", "max_new_tokens=4", "per_device_eval_batch_size=32"])
        == 0
    )
    results = json.loads((root / "eval" / "predict_results.json").read_text())
    assert results["predict_samples"] == 102
    assert results["predict_accuracy"] >= 95.0, results
