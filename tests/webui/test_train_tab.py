"""The Train tab's logic without a browser: suggested settings (the demo's for builtin:tiny, per-method
learning rates), the method and stage keys reaching the YAML, the run list, the live panel's helpers
(reward curves, loss wording, one status line, the finished run picked as the output)."""

from __future__ import annotations

import json

import pytest
import yaml

from tuneboard import demo
from tuneboard.config import load
from tuneboard.train.workflow import loss_summary
from tuneboard.webui import jobs, lookup, runs, suggest, train_live
from tuneboard.webui.paths import Workspace
from tuneboard.webui.tab_train import STAGE_CHOICES

FORM = dict(
    datasets=["identity"], learning_rate="1e-3", num_train_epochs=3, max_steps=20, max_samples=40,
    cutoff_len=128, per_device_train_batch_size=4, gradient_accumulation_steps=1, lr_scheduler_type="cosine",
    warmup_ratio=0, compute_type="fp32", lora_rank=8, lora_alpha=16, lora_dropout=0, lora_target="all",
    freeze_trainable_layers=2, logging_steps=2, save_steps=100, val_size=0, seed=42, dataset_dir="data",
)  # fmt: skip


def model(ws, ft="lora"):
    return lookup.model_settings(ws, "builtin:tiny", ft, None, "chatml", False)


@pytest.fixture
def ws(tmp_path):
    root = tmp_path / "root"
    (root / "data").mkdir(parents=True)
    return Workspace(root)


def test_builtin_tiny_gets_the_demo_settings():
    demo_yaml = yaml.safe_load(demo.TRAIN_YAML.format(out="x"))
    tiny = suggest.preset("builtin:tiny")
    for key, value in tiny.items():
        assert demo_yaml.get(key, {"gradient_accumulation_steps": 1}.get(key)) == value, key
    assert suggest.preset("Qwen/Qwen2.5-7B-Instruct")["finetuning_type"] == "lora"
    assert "finetuning_type: full" in suggest.summary(tiny) and "learning_rate: 5e-4" in suggest.summary(tiny)


def test_learning_rate_per_method():
    real = "Qwen/Qwen2.5-0.5B-Instruct"
    assert suggest.learning_rate(real, "lora") == suggest.learning_rate(real, "oft") == 2e-4
    assert suggest.learning_rate(real, "full") == suggest.learning_rate(real, "freeze") == 1e-5
    assert suggest.learning_rate("builtin:tiny", "full") == 5e-4
    texts = [suggest.lr_text(v) for v in (5e-4, 2e-4, 1e-5, 1e-3, 0.1, 1.5e-4)]
    assert texts == ["5e-4", "2e-4", "1e-5", "1e-3", "0.1", "1.5e-4"]


def test_method_options_reach_the_yaml(ws):
    form = {
        **FORM, "use_dora": True, "use_rslora": True, "pissa_init": False, "loraplus_lr_ratio": 16,
        "neftune_noise_alpha": 5, "weight_decay": 0.1,
    }  # fmt: skip
    out = lookup.saves_dir(ws, "builtin:tiny", "lora") / "r"
    path = jobs.write(ws, "configs/r.yaml", jobs.train_config(ws, model(ws), form, str(out)))
    cfg, _ = load(path)
    assert cfg.use_dora and cfg.use_rslora and not cfg.pissa_init
    assert cfg.loraplus_lr_ratio == 16 and cfg.neftune_noise_alpha == 5 and cfg.weight_decay == 0.1
    assert "pissa_init" not in path.read_text()
    # off (0 / unticked) writes nothing; the LoRA variants are never written for another method
    plain = jobs.train_config(ws, model(ws, "full"), {**form, "loraplus_lr_ratio": 0}, str(out))
    assert not {"use_dora", "use_rslora", "loraplus_lr_ratio"} & set(plain)
    jobs.validate(plain)


def test_stage_and_preference_keys_reach_the_yaml(ws):
    assert STAGE_CHOICES[0] == "sft" and {"dpo", "rm", "pt"} <= set(STAGE_CHOICES)
    out = str(lookup.saves_dir(ws, "builtin:tiny", "lora") / "r")
    data = jobs.train_config(
        ws, model(ws), {**FORM, "stage": "dpo", "pref_beta": 0.2, "pref_loss": "ipo"}, out
    )
    assert (data["stage"], data["pref_beta"], data["pref_loss"]) == ("dpo", 0.2, "ipo")
    jobs.validate(data)
    data = jobs.train_config(ws, model(ws), {**FORM, "stage": "rm", "pref_beta": 0.2}, out)
    assert data["stage"] == "rm" and "pref_beta" not in data
    assert jobs.train_config(ws, model(ws), FORM, out)["stage"] == "sft"


def _run(base, name, *, steps=(), total=10, finished=False, checkpoint=None, config=None):
    out = base / name
    out.mkdir(parents=True)
    (out / "tuneboard_config.yaml").write_text(
        yaml.safe_dump(config or {"dataset": "identity", "finetuning_type": "lora", "stage": "sft"})
    )
    lines = [json.dumps({"step": s, "total_steps": total, "loss": 3.0 - s / 10}) for s in steps]
    (out / "trainer_log.jsonl").write_text("".join(line + "\n" for line in lines))
    if checkpoint:
        (out / f"checkpoint-{checkpoint}").mkdir()
        (out / f"checkpoint-{checkpoint}" / "trainer_state.json").write_text(
            json.dumps({"global_step": checkpoint})
        )
    if finished:
        (out / "all_results.json").write_text(json.dumps({"train_loss": 2.5}))
    return out


def test_run_list_and_resumable_runs(ws):
    base = lookup.saves_dir(ws, "builtin:tiny", "lora")
    _run(base, "done", steps=(5, 10), finished=True, checkpoint=10)
    _run(base, "stopped", steps=(2, 4), checkpoint=4, config={"dataset": "a", "finetuning_type": "lora",
                                                            "use_dora": True, "stage": "dpo"})  # fmt: skip
    _run(base, "broken")
    live = _run(base, "live", steps=(2,))
    (base / "eval_x").mkdir()  # an evaluation's folder: not a run
    rows = {
        r["run"]: r
        for r in runs.run_list(ws, "builtin:tiny", "lora", {"state": "running", "output_dir": str(live)})
    }
    assert set(rows) == {"done", "stopped", "broken", "live"}
    assert rows["done"]["status"] == "finished" and rows["done"]["steps"] == "10 / 10"
    assert rows["done"]["loss"] == pytest.approx(2.0)
    assert rows["stopped"] == {
        "run": "stopped", "dataset": "a", "method": "lora + DoRA", "stage": "dpo", "steps": "4 / 10",
        "status": "stopped", "loss": pytest.approx(2.6),
    }  # fmt: skip
    assert rows["broken"]["status"] == "failed" and rows["live"]["status"] == "running"
    # a finished run (its last checkpoint kept) is not offered for Resume
    assert lookup.resumable_runs(ws, "builtin:tiny", "lora") == ["stopped"]
    frame = train_live.runs_frame("zh", list(rows.values()))
    assert list(frame.columns)[5] == "状态" and "已停止" in set(frame["状态"])


def test_reward_curves_and_loss_wording(tmp_path):
    rows = [
        {"step": 1, "loss": 0.69, "rewards/accuracies": 0.5, "rewards/margins": 0.0},
        {"step": 2, "loss": 0.6},
    ]
    (tmp_path / "trainer_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    frame = train_live.loss_frame("en", str(tmp_path))
    assert {"reward accuracy", "reward margin", "loss", "smoothed"} == set(frame["curve"])
    assert set(train_live.color_map()) >= {"reward accuracy", "奖励准确率", "smoothed"}
    legend = train_live.legend_html("en", frame)
    assert legend.count('class="tb-key"') == 4 and "reward margin" in legend and "eval loss" not in legend
    assert train_live.legend_html("en", None) == ""
    (tmp_path / "all_results.json").write_text(json.dumps({"train_loss": 0.645}))
    assert (
        train_live.loss_summary("en", str(tmp_path)) == "average loss 0.6450, last logged step's loss 0.6000"
    )
    history = [{"loss": 0.69, "step": 1}, {"loss": 0.6, "step": 2}, {"train_loss": 0.645}]
    assert loss_summary(0.645, history) == "average loss 0.6450, last logged step's loss 0.6000"


def test_one_status_line_and_the_finished_run_is_picked(ws):
    base = lookup.saves_dir(ws, "builtin:tiny", "lora")
    out = _run(base, "r1", steps=(5,), finished=True)
    (out / "adapter_config.json").write_text("{}")
    seen: dict = {}
    running = {"state": "running", "started": 1.0, "output_dir": str(out)}
    assert train_live.after_job(_ctx(ws), running, seen, "builtin:tiny", "lora") == [_skip(), _skip()]
    finished = {**running, "state": "finished"}
    message, output = train_live.after_job(_ctx(ws), finished, seen, "builtin:tiny", "lora")
    assert message == "" and output["value"] == "r1"
    # once per job: a later refresh leaves the user's own pick alone
    assert train_live.after_job(_ctx(ws), finished, seen, "builtin:tiny", "lora")[1] == _skip()
    # another model's folder: nothing to pick
    seen = {}
    assert train_live.after_job(_ctx(ws), finished, seen, "builtin:tiny", "full")[1] == _skip()


def _ctx(ws):
    class Ctx:
        pass

    ctx = Ctx()
    ctx.ws = ws
    return ctx


def _skip():
    import gradio as gr

    return gr.skip()
