"""Stage kto end to end on builtin:tiny with a synthetic set this test writes (desirable replies agree politely,
undesirable ones refuse), registered as LLaMA-Factory registers kto data: with LoRA the first loss is exactly half
of the mean weight (policy = reference), the loss falls, full fine-tuning uses a frozen reference, eval and export
work on the output, LLaMA-Factory's qwen3_lora_kto.yaml keys run, and sft on tagged data is refused."""

from __future__ import annotations

import json
import random

import pytest

from tuneboard.cli.main import main as tuneboard

from .conftest import read_log, write_yaml

pytestmark = pytest.mark.slow

WORDS = "天 地 人 山 水 花 草 树 鸟 鱼 风 雨 云 雪 日 月 星 光".split()


def kto_dir(root, n: int = 40):
    """A dataset dir with `tagged` (sharegpt, role/content tags, `label` true for every other record)."""
    data = root / "ktodata"
    data.mkdir(exist_ok=True)
    rng = random.Random(0)
    records = []
    for k in range(n):
        q = "".join(rng.choice(WORDS) for _ in range(4))
        reply = f"好的，{q}很美。" if k % 2 == 0 else "不知道。"
        msgs = [{"role": "user", "content": f"说说{q}"}, {"role": "assistant", "content": reply}]
        records.append({"messages": msgs, "label": k % 2 == 0})
    (data / "tagged.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    entry = {
        "file_name": "tagged.json",
        "formatting": "sharegpt",
        "columns": {"messages": "messages", "kto_tag": "label"},
        "tags": {
            "role_tag": "role",
            "content_tag": "content",
            "user_tag": "user",
            "assistant_tag": "assistant",
        },
    }
    (data / "dataset_info.json").write_text(json.dumps({"tagged": entry}), encoding="utf-8")
    return data


def run_kto(root, name: str, **keys):
    out = root / "saves" / name
    base = dict(
        model_name_or_path="builtin:tiny",
        stage="kto",
        dataset="tagged",
        dataset_dir=str(kto_dir(root)),
        template="qwen",
        cutoff_len=64,
        output_dir=str(out),
        per_device_train_batch_size=8,
        max_steps=4,
        logging_steps=1,
        learning_rate=5e-3,
        lora_rank=8,
        save_strategy="no",
        seed=1,
    )
    base.update(keys)
    assert tuneboard(["train", str(write_yaml(root / f"{name}.yaml", **base))]) == 0
    return out


def test_kto_lora_starts_at_half_the_weight_and_the_loss_falls(tmp_path):
    """One batch holds all 40 records (20 desirable, weight 1.0; 20 undesirable, weight 1.5): with policy =
    reference every record's loss is 0.5 x its weight, so the first loss is 0.5 x (20 + 30) / 40 = 0.625."""
    out = run_kto(
        tmp_path, "kto", per_device_train_batch_size=40, max_steps=8, kto_rejected_weight=1.5, pref_beta=0.5
    )
    logs = [r for r in read_log(out) if "loss" in r]
    assert len(logs) == 8
    assert abs(logs[0]["loss"] - 0.625) < 1e-5, logs[0]
    assert logs[0]["kl"] == 0.0 and logs[0]["rewards/chosen"] == logs[0]["rewards/rejected"] == 0.0
    for key in ("rewards/chosen", "rewards/rejected", "logps/chosen", "logps/rejected", "kl"):
        assert key in logs[-1]
    assert logs[-1]["loss"] < logs[0]["loss"] - 0.05, [r["loss"] for r in logs]
    assert logs[-1]["rewards/chosen"] > logs[-1]["rewards/rejected"]
    assert (out / "adapter_model.safetensors").exists()


def test_full_finetuning_uses_a_frozen_reference(tmp_path):
    out = run_kto(tmp_path, "kto-full", finetuning_type="full", max_steps=2, learning_rate=1e-4, pref_ftx=0.1)
    first = next(r for r in read_log(out) if "loss" in r)
    # policy = reference: 0.5 per record, plus pref_ftx x the desirable replies' per-token NLL (positive)
    assert first["loss"] > 0.5 and first["kl"] == 0.0
    assert (out / "model.safetensors").exists()


def test_eval_and_export_work_on_a_kto_output(tmp_path, capsys):
    import torch
    from transformers import AutoModelForCausalLM

    out = run_kto(tmp_path, "kto-out", max_steps=2)
    cfg = write_yaml(
        tmp_path / "eval.yaml",
        adapter_name_or_path=str(out),
        eval_dataset="tagged",
        dataset_dir=str(tmp_path / "ktodata"),
        template="qwen",
        max_samples=4,
        max_new_tokens=4,
        output_dir=str(tmp_path / "eval"),
    )
    assert tuneboard(["eval", str(cfg)]) == 0
    assert "2 of 4 records hold an undesirable reply" in capsys.readouterr().out
    lines = (tmp_path / "eval" / "generated_predictions.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 and all(json.loads(x)["label"].startswith("好的，") for x in lines)
    export = tmp_path / "export"
    cfg = write_yaml(tmp_path / "export.yaml", model_name_or_path=str(out), export_dir=str(export))
    assert tuneboard(["export", str(cfg)]) == 0
    model = AutoModelForCausalLM.from_pretrained(export, dtype=torch.float32)
    assert model.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=2).shape == (1, 5)


def test_sft_on_tagged_data_is_refused_and_data_check_counts_tags(tmp_path, capsys):
    data = str(kto_dir(tmp_path))
    cfg = write_yaml(
        tmp_path / "sft.yaml", dataset="tagged", dataset_dir=data, output_dir=str(tmp_path / "x")
    )
    assert tuneboard(["train", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "20 undesirable, which stage sft would train as targets" in err and "stage: kto" in err
    assert not (tmp_path / "x").exists()
    assert tuneboard(["data", "check", "tagged", "--dataset-dir", data]) == 0
    assert "KTO replies (kto_tag): 20 desirable, 20 undesirable" in capsys.readouterr().out


LF_KTO_YAML = """### model
model_name_or_path: builtin:tiny
trust_remote_code: true

### method
stage: kto
do_train: true
finetuning_type: lora
lora_rank: 8
lora_target: all
pref_beta: 0.1

### dataset
dataset: kto_en_demo
template: qwen3_nothink
cutoff_len: 128
max_samples: 16
preprocessing_num_workers: 16
dataloader_num_workers: 0

### output
output_dir: saves/kto
logging_steps: 1
save_steps: 500
plot_loss: true
overwrite_output_dir: true
save_only_model: false
report_to: none

### train
per_device_train_batch_size: 1
gradient_accumulation_steps: 8
learning_rate: 5.0e-6
num_train_epochs: 1.0
lr_scheduler_type: cosine
warmup_ratio: 0.1
bf16: true
ddp_timeout: 180000000
resume_from_checkpoint: null
"""


def test_llamafactory_kto_example_yaml_runs(tmp_path, monkeypatch):
    """examples/train_lora/qwen3_lora_kto.yaml's keys, only the model and the sizes swapped (and
    dataloader_num_workers 0 for test speed), with a tagged set registered under LLaMA-Factory's name."""
    data = kto_dir(tmp_path)
    info = json.loads((data / "dataset_info.json").read_text())
    (data / "dataset_info.json").write_text(json.dumps({"kto_en_demo": info["tagged"]}))
    data.rename(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.yaml").write_text(LF_KTO_YAML)
    assert tuneboard(["train", "run.yaml"]) == 0
    logs = [r for r in read_log(tmp_path / "saves" / "kto") if "loss" in r]
    assert len(logs) == 2 and abs(logs[0]["loss"] - 0.5) < 1e-5
