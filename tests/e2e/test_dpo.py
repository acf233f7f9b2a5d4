"""Stage dpo end to end on builtin:tiny with a synthetic preference set this test writes (chosen replies always
agree politely, rejected ones refuse): with LoRA the first loss is ln 2 (policy = reference), training raises
the held-out reward accuracy above chance, every pref_loss runs, and chat/export work on the output."""

from __future__ import annotations

import json
import math
import random

import pytest

from tuneboard.cli.main import main as tuneboard

from .conftest import read_log, write_yaml

pytestmark = pytest.mark.slow

WORDS = "天 地 人 山 水 花 草 树 鸟 鱼 风 雨 云 雪 日 月 星 光".split()


def preference_dir(root):
    """A dataset dir with `prefs` (alpaca, ranking) and `prefs_sg` (sharegpt, ranking)."""
    data = root / "prefdata"
    data.mkdir(exist_ok=True)
    rng = random.Random(0)
    alpaca, sharegpt = [], []
    for _ in range(80):
        q = "".join(rng.choice(WORDS) for _ in range(4))
        alpaca.append({"instruction": f"说说{q}", "chosen": f"好的，{q}很美。", "rejected": "不知道。"})
        sharegpt.append(
            {
                "conversations": [{"from": "human", "value": f"说说{q}"}],
                "chosen": {"from": "gpt", "value": f"好的，{q}很美。"},
                "rejected": {"from": "gpt", "value": "不知道。"},
            }
        )
    (data / "prefs.json").write_text(json.dumps(alpaca, ensure_ascii=False), encoding="utf-8")
    (data / "prefs_sg.json").write_text(json.dumps(sharegpt, ensure_ascii=False), encoding="utf-8")
    info = {
        "prefs": {"file_name": "prefs.json", "ranking": True, "columns": {"prompt": "instruction"}},
        "prefs_sg": {
            "file_name": "prefs_sg.json",
            "formatting": "sharegpt",
            "ranking": True,
            "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"},
        },
    }
    (data / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")
    return data


def run_dpo(root, name: str, **keys):
    out = root / "saves" / name
    base = dict(
        model_name_or_path="builtin:tiny",
        stage="dpo",
        dataset="prefs",
        dataset_dir=str(preference_dir(root)),
        template="qwen",
        cutoff_len=128,
        output_dir=str(out),
        per_device_train_batch_size=8,
        max_steps=6,
        logging_steps=1,
        learning_rate=5e-3,
        lora_rank=8,
        save_strategy="no",
        seed=1,
        overwrite_cache=True,
    )
    base.update(keys)
    assert tuneboard(["train", str(write_yaml(root / f"{name}.yaml", **base))]) == 0
    return out


def test_dpo_lora_starts_at_ln2_and_learns_the_preference(tmp_path):
    out = run_dpo(
        tmp_path, "dpo", dataset="prefs_sg", max_steps=25, val_size=0.2, eval_strategy="steps", eval_steps=25
    )
    log = read_log(out)
    train_logs = [r for r in log if "loss" in r]
    assert abs(train_logs[0]["loss"] - math.log(2)) < 1e-4, train_logs[0]
    assert train_logs[0]["rewards/margins"] == pytest.approx(0.0, abs=1e-5)
    for key in ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "logps/chosen", "logps/rejected"):
        assert key in train_logs[-1]
    evals = [r for r in log if "eval_rewards/accuracies" in r]
    assert evals and evals[-1]["eval_rewards/accuracies"] > 0.75, evals
    assert evals[-1]["eval_loss"] < math.log(2) - 0.1
    assert (out / "adapter_model.safetensors").exists()


@pytest.mark.parametrize("loss", ["sigmoid", "hinge", "ipo", "orpo", "simpo"])
def test_each_pref_loss_trains(tmp_path, loss):
    out = run_dpo(tmp_path, f"dpo-{loss}", pref_loss=loss, pref_ftx=0.1, dpo_label_smoothing=0.1)
    seen = [r["loss"] for r in read_log(out) if "loss" in r]
    assert len(seen) == 6 and all(math.isfinite(x) for x in seen)
    assert seen[-1] < seen[0], seen


def test_full_finetuning_uses_a_frozen_reference(tmp_path):
    out = run_dpo(tmp_path, "dpo-full", finetuning_type="full", max_steps=3, learning_rate=1e-4)
    first = next(r for r in read_log(out) if "loss" in r)
    assert abs(first["loss"] - math.log(2)) < 1e-4
    assert (out / "model.safetensors").exists()


def test_sft_on_pairs_points_to_dpo(tmp_path, capsys):
    cfg = write_yaml(
        tmp_path / "sft.yaml", dataset="prefs", dataset_dir=str(preference_dir(tmp_path)), output_dir="x"
    )
    assert tuneboard(["train", str(cfg)]) == 1
    assert "stage: dpo or stage: rm" in capsys.readouterr().err


def test_eval_and_export_work_on_a_dpo_output(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    out = run_dpo(tmp_path, "dpo-out", max_steps=4)
    data = str(tmp_path / "prefdata")
    cfg = write_yaml(
        tmp_path / "eval.yaml",
        adapter_name_or_path=str(out),
        eval_dataset="prefs",
        dataset_dir=data,
        template="qwen",
        max_samples=4,
        max_new_tokens=4,
        output_dir=str(tmp_path / "eval"),
    )
    assert tuneboard(["eval", str(cfg)]) == 0
    lines = (tmp_path / "eval" / "generated_predictions.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 4 and json.loads(lines[0])["label"].startswith("好的，")  # the chosen reply
    export = tmp_path / "export"
    cfg = write_yaml(tmp_path / "export.yaml", model_name_or_path=str(out), export_dir=str(export))
    assert tuneboard(["export", str(cfg)]) == 0
    model = AutoModelForCausalLM.from_pretrained(export, dtype=torch.float32)
    assert model.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=2).shape == (1, 5)


def test_data_check_and_preview_show_pairs(tmp_path, capsys):
    data = str(preference_dir(tmp_path))
    assert tuneboard(["data", "check", "prefs_sg", "--dataset-dir", data]) == 0
    assert "preference pairs (chosen + rejected reply): 80" in capsys.readouterr().out
    assert (
        tuneboard(["data", "preview", "prefs", "--dataset-dir", data, "-n", "1", "--template", "qwen"]) == 0
    )
    text = capsys.readouterr().out
    assert "preference pair" in text and "[[不知道。<|im_end|>\n]]" in text and "[[好的，" in text


LF_YAML = """### model
model_name_or_path: builtin:tiny
trust_remote_code: true

### method
stage: {stage}
do_train: true
finetuning_type: lora
lora_rank: 8
lora_target: all
{extra}
### dataset
dataset: dpo_en_demo
template: qwen3_nothink
cutoff_len: 128
max_samples: 16
preprocessing_num_workers: 16
dataloader_num_workers: 0

### output
output_dir: saves/{stage}
logging_steps: 1
save_steps: 500
plot_loss: true
overwrite_output_dir: true
save_only_model: false
report_to: none

### train
per_device_train_batch_size: 1
gradient_accumulation_steps: 8
learning_rate: 1.0e-4
num_train_epochs: 1.0
lr_scheduler_type: cosine
warmup_ratio: 0.1
bf16: true
ddp_timeout: 180000000
resume_from_checkpoint: null
"""


@pytest.mark.parametrize(
    ("stage", "extra"), [("dpo", "pref_beta: 0.1\npref_loss: sigmoid\n"), ("rm", "")], ids=["dpo", "reward"]
)
def test_llamafactory_example_yamls_run(tmp_path, monkeypatch, stage, extra):
    """examples/train_lora/qwen3_lora_{dpo,reward}.yaml's keys, only the model and the sizes swapped (and
    dataloader_num_workers 0 for test speed), with a pair set registered under LLaMA-Factory's name."""
    data = preference_dir(tmp_path)
    info = json.loads((data / "dataset_info.json").read_text())
    info["dpo_en_demo"] = info["prefs_sg"]
    (data / "dataset_info.json").write_text(json.dumps(info))
    data.rename(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.yaml").write_text(LF_YAML.format(stage=stage, extra=extra))
    assert tuneboard(["train", "run.yaml"]) == 0
    assert len([r for r in read_log(tmp_path / "saves" / stage) if "loss" in r]) == 2
