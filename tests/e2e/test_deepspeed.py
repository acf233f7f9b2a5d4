"""DeepSpeed ZeRO-3 on the CPU with the shipped examples/deepspeed/ds_z3_config.json (LLaMA-Factory's shape, every
size "auto"): full fine-tuning and LoRA, 2 steps each; the run finishes, the loss is finite and what was saved
loads in plain transformers / peft.

`tuneboard train` starts torchrun itself even for one process (DeepSpeed reads its rank from torchrun's variables;
without them it tries MPI). The first run on a machine compiles DeepSpeed's shm_comm extension (~40 s, cached)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import read_log, write_yaml

pytestmark = pytest.mark.slow
pytest.importorskip("deepspeed")
ROOT = Path(__file__).resolve().parents[2]
DS_Z3 = ROOT / "examples" / "deepspeed" / "ds_z3_config.json"


def train_z3(workspace: Path, name: str, **keys) -> tuple[Path, str]:
    out = workspace / "saves" / name
    cfg = dict(
        model_name_or_path="builtin:tiny",
        dataset="identity",
        dataset_dir=str(workspace / "data"),
        max_samples=16,
        cutoff_len=64,
        per_device_train_batch_size=4,
        max_steps=2,
        logging_steps=1,
        learning_rate=1e-3,
        output_dir=str(out),
        deepspeed=str(DS_Z3),
        seed=1,
    )
    cfg.update(keys)
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "WORLD_SIZE", "RANK")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    cmd = [sys.executable, "-m", "tuneboard", "train", str(write_yaml(workspace / f"{name}.yaml", **cfg))]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert "launching 1 training process with torchrun" in output
    # a ZeRO-3 checkpoint: each rank's partition of the model, not one whole model_states file
    assert (out / "checkpoint-2" / "global_step2" / "zero_pp_rank_0_mp_rank_00_model_states.pt").is_file()
    return out, output


def finite_losses(out: Path) -> list[float]:
    losses = [rec["loss"] for rec in read_log(out) if "loss" in rec]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses), losses
    results = json.loads((out / "all_results.json").read_text())
    assert results["global_step"] == 2 and math.isfinite(results["train_loss"])
    return losses


def test_zero3_full_fine_tuning_saves_a_whole_model(workspace):
    import torch
    from transformers import AutoModelForCausalLM

    from tuneboard.model import tiny

    out, output = train_z3(workspace, "ds-z3-full", finetuning_type="full")
    assert "(0.00M parameters" not in output  # counted from the partitions' full sizes (ds_numel)
    finite_losses(out)
    model = AutoModelForCausalLM.from_pretrained(out)  # gathered from the shards at save (16-bit weights on)
    base = AutoModelForCausalLM.from_pretrained(tiny.ensure())
    trained, before = model.state_dict(), base.state_dict()
    assert trained.keys() == before.keys()
    assert all(trained[k].shape == before[k].shape for k in before)  # whole tensors, not ZeRO-3 partitions
    assert any(not torch.equal(trained[k], before[k]) for k in before)  # and trained


def test_zero3_lora_with_fp16_on_a_cpu_trains_in_fp32(workspace):
    """fp16: true cannot run on a CPU: tuneboard says so and trains in fp32; the JSON's fp16 "auto" follows."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tuneboard.model import tiny

    out, output = train_z3(workspace, "ds-z3-lora", finetuning_type="lora", lora_rank=8, fp16=True)
    assert "fp16: true needs a CUDA GPU; training in fp32" in output
    finite_losses(out)
    assert (out / "adapter_model.safetensors").exists() and not (out / "model.safetensors").exists()
    base = AutoModelForCausalLM.from_pretrained(tiny.ensure())
    model = PeftModel.from_pretrained(base, out)
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)  # B starts at zero: non-zero means it trained
    assert all(p.dtype == torch.float32 for p in lora_b)
