"""`tuneboard train` end to end on builtin:tiny: outputs, loss falls, methods, guards."""

from __future__ import annotations

import json

import pytest
import yaml

from tuneboard import rundir
from tuneboard.cli.main import main as tuneboard
from tuneboard.webui.runner import read_progress

from .conftest import read_log, train, write_yaml

pytestmark = pytest.mark.slow


def test_full_run_writes_every_output_and_loss_falls(identity_full):
    names = {p.name for p in identity_full.iterdir()}
    for expected in (
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "chat_template.jinja",
        "tuneboard_config.yaml",
        "trainer_log.jsonl",
        "all_results.json",
        "training_loss.png",
    ):
        assert expected in names, expected
    log = [r for r in read_log(identity_full) if "loss" in r]
    assert log[-1]["loss"] < log[0]["loss"] / 3
    for key in (
        "step",
        "total_steps",
        "loss",
        "lr",
        "epoch",
        "tokens",
        "tokens_per_second",
        "elapsed",
        "remaining",
    ):
        assert key in log[0]
    assert 0 < log[0]["tokens"] < log[-1]["tokens"]
    results = json.loads((identity_full / "all_results.json").read_text())
    for key in ("train_runtime", "train_loss", "train_samples_per_second", "train_tokens_per_second"):
        assert results[key] > 0
    saved = yaml.safe_load((identity_full / "tuneboard_config.yaml").read_text())
    assert saved["finetuning_type"] == "full" and saved["dataset"] == "identity"
    progress = rundir.read_progress(identity_full)  # what the web UI's progress bar reads
    assert progress["step"] == progress["max_steps"] == results["global_step"] and progress["eta"] == 0
    assert progress["loss"] == log[-1]["loss"] and progress["elapsed"] > 0
    assert read_progress(identity_full) == {"step": results["global_step"], "total": results["global_step"],
                                            "remaining": "00:00"}  # fmt: skip


def test_lora_run_writes_peft_adapter(small_lora):
    cfg = json.loads((small_lora / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["r"] == 8
    assert (small_lora / "adapter_model.safetensors").exists()
    assert not (small_lora / "model.safetensors").exists()
    assert sorted(cfg["target_modules"]) == sorted(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )


def test_freeze_trains_only_last_layers(workspace):
    out = train(
        workspace,
        "freeze",
        finetuning_type="freeze",
        freeze_trainable_layers=1,
        max_steps=4,
        learning_rate=1e-3,
    )
    from safetensors.torch import load_file

    from tuneboard.model import tiny

    before = load_file(tiny.ensure() / "model.safetensors")
    after = load_file(out / "model.safetensors")
    changed = {k for k in after if not (after[k] == before[k]).all()}
    assert changed and all(k.startswith("model.layers.3.") for k in changed), changed


def test_finished_run_is_not_overwritten(workspace, small_lora, capsys):
    cfg = workspace / "small-lora.yaml"
    assert tuneboard(["train", str(cfg)]) == 1
    assert "already holds a finished run" in capsys.readouterr().err


def test_unsupported_stage_and_unknown_key(workspace, capsys):
    cfg = write_yaml(workspace / "dpo.yaml", stage="ppo", dataset="identity")
    assert tuneboard(["train", str(cfg)]) == 1
    assert "not supported yet" in capsys.readouterr().err
    cfg = write_yaml(workspace / "typo.yaml", lora_rnak=8, dataset="identity")
    assert tuneboard(["train", str(cfg)]) == 1
    assert "did you mean 'lora_rank'" in capsys.readouterr().err


def test_bf16_on_cpu_without_support_falls_back(workspace, capsys):
    from tuneboard.train.arguments import cpu_bf16_supported

    out = train(workspace, "bf16", finetuning_type="lora", bf16=True, max_steps=2)
    assert (out / "adapter_model.safetensors").exists()
    if not cpu_bf16_supported():
        assert "bf16: true is not supported" in capsys.readouterr().err


def test_qlora_without_cuda_is_a_clear_error(workspace, capsys):
    cfg = write_yaml(
        workspace / "qlora.yaml",
        dataset="identity",
        dataset_dir=str(workspace / "data"),
        quantization_bit=4,
        output_dir=str(workspace / "saves/qlora"),
    )
    assert tuneboard(["train", str(cfg)]) == 1
    assert "needs a CUDA GPU" in capsys.readouterr().err
    assert not (workspace / "saves/qlora").exists()


def test_llamafactory_example_config_runs_unchanged(workspace):
    """The keys of LLaMA-Factory's qwen3_lora_sft.yaml, with model path and sizes changed."""
    text = f"""\
### model
model_name_or_path: builtin:tiny
trust_remote_code: true

### method
stage: sft
do_train: true
finetuning_type: lora
lora_rank: 8
lora_target: all

### dataset
dataset: identity,triage_train
dataset_dir: {workspace / "data"}
template: qwen3_nothink
cutoff_len: 256
max_samples: 16
overwrite_cache: true
preprocessing_num_workers: 2
dataloader_num_workers: 0

### output
output_dir: {workspace / "saves/lf-example"}
logging_steps: 1
save_steps: 500
plot_loss: true
overwrite_output_dir: true
save_only_model: false
report_to: none

### train
per_device_train_batch_size: 4
gradient_accumulation_steps: 2
learning_rate: 1.0e-4
num_train_epochs: 1.0
lr_scheduler_type: cosine
warmup_ratio: 0.1
bf16: true
ddp_timeout: 180000000
resume_from_checkpoint: null
"""
    cfg = workspace / "qwen3_lora_sft.yaml"
    cfg.write_text(text, encoding="utf-8")
    assert tuneboard(["train", str(cfg)]) == 0
    assert (workspace / "saves/lf-example/adapter_model.safetensors").exists()


@pytest.mark.parametrize(
    ("fused_ops", "zero3", "expected"),
    [(True, False, True), (False, False, False), (True, True, False)],
    ids=["default", "fused_ops-false", "zero3"],
)
def test_fused_ops_are_used_unless_off_or_sharded(workspace, monkeypatch, fused_ops, zero3, expected):
    """fused_ops trains through model/fused.py; DeepSpeed ZeRO-3 (weights gathered only inside each module's own
    forward) keeps autograd's path."""
    import transformers.integrations

    from tuneboard.train import trainer

    calls = []
    real = trainer.fuse_mlps
    monkeypatch.setattr(trainer, "fuse_mlps", lambda model: calls.append(real(model)))
    monkeypatch.setattr(transformers.integrations, "is_deepspeed_zero3_enabled", lambda: zero3)
    train(workspace, f"fused-{fused_ops}-{zero3}", fused_ops=fused_ops, max_steps=2, finetuning_type="lora")
    assert calls == ([4] if expected else [])  # builtin:tiny has 4 layers


def test_sigint_stops_a_train_that_inherited_it_ignored(workspace):
    """The web UI's Stop is a SIGINT. A web UI started from a background shell passes SIGINT down ignored; the
    command restores it, so a Stop during start-up (imports, model load) is not lost."""
    import signal
    import subprocess
    import sys
    import time

    out = workspace / "saves" / "sigint"
    cfg = write_yaml(
        workspace / "sigint.yaml",
        model_name_or_path="builtin:tiny",
        dataset="identity",
        dataset_dir=str(workspace / "data"),
        cutoff_len=128,
        output_dir=str(out),
        max_steps=100000,  # hours: only the signal can end it within the test
        save_steps=100000,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "tuneboard", "train", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(90)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("SIGINT was ignored: the run went on")
    err = proc.stderr.read().decode()
    assert code in (0, 130), err  # 130: stopped while starting; 0: stopped after a checkpoint
    assert not (out / "all_results.json").exists()


def test_a_bf16_checkpoint_trains_in_the_precision_asked_for(workspace, tmp_path, capsys):
    """Real checkpoints are saved in bf16; transformers 5 keeps that dtype unless told otherwise. On the CPU
    (no bf16 asked) the weights must be loaded in fp32, and the header says so."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneboard.model import tiny

    src = tiny.ensure()
    bf16_dir = tmp_path / "bf16-model"
    AutoModelForCausalLM.from_pretrained(src, dtype=torch.bfloat16).save_pretrained(bf16_dir)
    AutoTokenizer.from_pretrained(src).save_pretrained(bf16_dir)
    saved = json.loads((bf16_dir / "config.json").read_text())
    assert saved.get("dtype", saved.get("torch_dtype")) == "bfloat16"
    capsys.readouterr()
    out = train(workspace, "bf16-lora", model_name_or_path=str(bf16_dir), template="chatml", max_steps=2)
    header = capsys.readouterr().out
    assert "weights loaded in float32" in header, header
    assert (out / "adapter_model.safetensors").exists()
    card = (out / "README.md").read_text(encoding="utf-8")  # the model card says what was saved
    assert "- saved weights: f32 (safetensors)" in card and "- training computed in: fp32" in card
    assert "- stage: sft, method: lora" in card
    exported = tmp_path / "export-auto"  # export_dtype auto: the base checkpoint's bf16, not the merge's fp32
    assert tuneboard(["export", f"model_name_or_path={out}", f"export_dir={exported}"]) == 0
    assert json.loads((exported / "config.json").read_text()).get("dtype") == "bfloat16"
    from safetensors import safe_open

    with safe_open(str(next(exported.glob("*.safetensors"))), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}
