"""Stage pt end to end on builtin:tiny: continued pre-training on plain text (a .txt file and LLaMA-Factory's
`columns: {prompt: text}` entry) lowers the loss; data check / preview show documents; eval, chat and export
work on the output; LLaMA-Factory's qwen3_lora_pretrain.yaml keys run with the model and sizes swapped."""

from __future__ import annotations

import io
import json
import random

import pytest
import torch

from tuneboard.cli.main import main as tuneboard
from tuneboard.config import Config

from .conftest import read_log, write_yaml

pytestmark = pytest.mark.slow

WORDS = "天 地 人 山 水 花 草 树 鸟 鱼".split()


def text_dir(root):
    """`notes` (a .txt, one document a line), `c4_demo` (LLaMA-Factory's jsonl entry) and `qa` (alpaca)."""
    data = root / "data"
    data.mkdir(exist_ok=True)
    rng = random.Random(0)
    lines = ["".join(rng.choice(WORDS[:5]) for _ in range(12)) + "。" for _ in range(60)]  # a small language
    (data / "notes.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with open(data / "c4.jsonl", "w", encoding="utf-8") as f:
        for line in lines[:16]:
            f.write(json.dumps({"text": line}, ensure_ascii=False) + "\n")
    qa = [{"instruction": f"说说{w}", "output": f"{w}很美。"} for w in WORDS]
    (data / "qa.json").write_text(json.dumps(qa, ensure_ascii=False), encoding="utf-8")
    info = {
        "notes": {"file_name": "notes.txt"},
        "c4_demo": {"file_name": "c4.jsonl", "columns": {"prompt": "text"}},
        "qa": {"file_name": "qa.json"},
    }
    (data / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")
    return data


def run_pt(root, name: str, **keys):
    out = root / "saves" / name
    base = dict(
        model_name_or_path="builtin:tiny",
        stage="pt",
        dataset="notes",
        dataset_dir=str(text_dir(root)),
        cutoff_len=32,
        output_dir=str(out),
        per_device_train_batch_size=8,
        max_steps=12,
        logging_steps=1,
        learning_rate=5e-3,
        save_strategy="no",
        seed=1,
    )
    base.update(keys)
    assert tuneboard(["train", str(write_yaml(root / f"{name}.yaml", **base))]) == 0
    return out


@pytest.mark.parametrize("method", ["lora", "full"])
def test_pt_lowers_the_loss_on_plain_text(tmp_path, method):
    out = run_pt(tmp_path, method, finetuning_type=method, learning_rate=5e-3 if method == "lora" else 1e-3)
    losses = [r["loss"] for r in read_log(out) if "loss" in r]
    assert len(losses) == 12 and sum(losses[-3:]) / 3 < losses[0] - 0.5, losses


def test_stages_and_data_must_agree(tmp_path, capsys):
    data = str(text_dir(tmp_path))
    cfg = dict(
        model_name_or_path="builtin:tiny", dataset_dir=data, output_dir=str(tmp_path / "o"), max_steps=1
    )
    assert (
        tuneboard(["train", str(write_yaml(tmp_path / "a.yaml", stage="sft", dataset="notes", **cfg))]) == 1
    )
    assert "60 of 60 records are plain text (no reply); continue pre-training on them with stage: pt" in (
        capsys.readouterr().err
    )
    assert tuneboard(["train", str(write_yaml(tmp_path / "b.yaml", stage="pt", dataset="qa", **cfg))]) == 1
    assert "stage pt trains on plain text, but 10 of 10 records of qa" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    tok = dict(stage="pt", dataset="notes", tokenized_path=str(tmp_path / "tok"), **cfg)
    assert tuneboard(["train", str(write_yaml(tmp_path / "c.yaml", **tok))]) == 1
    assert "tokenized_path is supported for stage sft; stage pt tokenizes its data each run" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "tok").exists()


def test_data_check_and_preview_show_documents(tmp_path, capsys):
    data = str(text_dir(tmp_path))
    assert tuneboard(["data", "check", "c4_demo", "--dataset-dir", data, "--model", "builtin:tiny"]) == 0
    out = capsys.readouterr().out
    assert "pre-training text (no reply): 16 documents; trained with stage: pt" in out and "tokens p50" in out
    assert tuneboard(["data", "preview", "notes", "--dataset-dir", data, "-n", "1"]) == 0
    out = capsys.readouterr().out
    assert "--- record 0: document," in out and "all trained (stage pt)" in out and out.count("[[") == 1


def test_eval_chat_and_export_work_on_a_pt_output(tmp_path):
    from transformers import AutoModelForCausalLM

    from tuneboard.cli import chat as chat_cli

    out = run_pt(tmp_path, "lora-out", max_steps=3)
    data = str(tmp_path / "data")
    cfg = write_yaml(
        tmp_path / "eval.yaml",
        adapter_name_or_path=str(out),
        eval_dataset="qa",
        dataset_dir=data,
        max_samples=3,
        max_new_tokens=4,
        output_dir=str(tmp_path / "eval"),
    )
    assert tuneboard(["eval", str(cfg)]) == 0
    assert (
        len((tmp_path / "eval" / "generated_predictions.jsonl").read_text(encoding="utf-8").splitlines()) == 3
    )
    chat = io.StringIO()
    settings = Config(model_name_or_path=str(out), max_new_tokens=3, do_sample=False)
    assert chat_cli.run(settings, stdin=io.StringIO("天地\nexit\n"), stdout=chat) == 0
    assert chat.getvalue().strip()
    export = tmp_path / "export"
    cfg = write_yaml(tmp_path / "export.yaml", model_name_or_path=str(out), export_dir=str(export))
    assert tuneboard(["export", str(cfg)]) == 0
    model = AutoModelForCausalLM.from_pretrained(export, dtype=torch.float32)
    assert model.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=2).shape == (1, 5)


LF_PRETRAIN_YAML = """### model
model_name_or_path: builtin:tiny
trust_remote_code: true

### method
stage: pt
do_train: true
finetuning_type: lora
lora_rank: 8
lora_target: all

### dataset
dataset: c4_demo
cutoff_len: 64
max_samples: 1000
preprocessing_num_workers: 16
dataloader_num_workers: 0

### output
output_dir: saves/qwen3-4b/lora/pretrain
logging_steps: 1
save_steps: 500
plot_loss: true
overwrite_output_dir: true
save_only_model: false
report_to: none  # choices: [none, wandb, tensorboard, swanlab, mlflow]

### train
per_device_train_batch_size: 1
gradient_accumulation_steps: 2
learning_rate: 1.0e-4
num_train_epochs: 1.0
lr_scheduler_type: cosine
warmup_ratio: 0.1
bf16: true
ddp_timeout: 180000000
resume_from_checkpoint: null
"""


def test_llamafactory_pretrain_yaml_runs(tmp_path, monkeypatch):
    """examples/train_lora/qwen3_lora_pretrain.yaml's keys; model, cutoff_len, accumulation swapped for the
    tiny model (and dataloader_num_workers 0 for test speed), c4_demo registered as LLaMA-Factory does."""
    text_dir(tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.yaml").write_text(LF_PRETRAIN_YAML)
    assert tuneboard(["train", "run.yaml"]) == 0
    out = tmp_path / "saves/qwen3-4b/lora/pretrain"
    assert [r for r in read_log(out) if "loss" in r] and (out / "adapter_model.safetensors").exists()
