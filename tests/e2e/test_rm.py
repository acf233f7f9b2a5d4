"""Stage rm end to end on builtin:tiny: the pairwise loss trains a value head, held-out reward accuracy rises
above chance, and the output loads in transformers as a sequence-classification model that scores unseen
chosen replies above rejected ones."""

from __future__ import annotations

import math
import random

import pytest

from tuneboard.data.formats import ASSISTANT, USER, Conversation, Message
from tuneboard.data.pairs import encode_pairs
from tuneboard.data.templates.named import get_template

from .conftest import read_log
from .test_dpo import WORDS, run_dpo

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("finetuning_type", ["lora", "full"])
def test_reward_model_trains_and_loads_in_transformers(tmp_path, finetuning_type):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = run_dpo(
        tmp_path,
        f"rm-{finetuning_type}",
        stage="rm",
        finetuning_type=finetuning_type,
        learning_rate=5e-3 if finetuning_type == "lora" else 1e-3,
        max_steps=15,
        val_size=0.2,
        eval_strategy="steps",
        eval_steps=15,
    )
    log = read_log(out)
    first = next(r for r in log if "loss" in r)
    assert math.isfinite(first["loss"]) and "rewards/accuracies" in first
    assert [r for r in log if "eval_rewards/accuracies" in r][-1]["eval_rewards/accuracies"] > 0.75
    assert not (out / "adapter_config.json").exists()

    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    rng = random.Random(7)
    convs = []
    for _ in range(16):
        q = "".join(rng.choice(WORDS) for _ in range(3))
        c = Conversation([Message(USER, f"说说{q}"), Message(ASSISTANT, f"好的，{q}很美。")])
        c.rejected = Message(ASSISTANT, "不知道。")
        convs.append(c)
    enc, _ = encode_pairs(convs, get_template("qwen"), tok, 128)
    wins = 0
    with torch.no_grad():
        for c_ids, r_ids in zip(enc["chosen_input_ids"], enc["rejected_input_ids"], strict=True):
            score = [model(input_ids=torch.tensor([ids])).logits[0, 0].item() for ids in (c_ids, r_ids)]
            wins += score[0] > score[1]
    assert wins >= 13, wins


def test_resume_continues_with_the_trained_value_head(tmp_path):
    """A LoRA checkpoint holds only the adapter: without the head saved beside it, a resumed run would go on
    from a freshly initialised head and end elsewhere than the uninterrupted run."""
    import shutil

    from safetensors.torch import load_file

    from tuneboard import rundir

    keys = dict(stage="rm", max_steps=8, save_strategy="steps", save_steps=4, learning_rate=1e-3)
    ref = run_dpo(tmp_path, "rm-ref", **keys)
    assert (ref / "checkpoint-4" / rundir.VALUE_HEAD).is_file()

    # the run as a kill after its first checkpoint leaves it
    resumed = tmp_path / "saves" / "rm-resumed"
    shutil.copytree(ref / "checkpoint-4", resumed / "checkpoint-4")
    run_dpo(tmp_path, "rm-resumed", **keys, resume_from_checkpoint=True)
    head = {d: load_file(str(d / "model.safetensors"))["score.weight"] for d in (ref, resumed)}
    assert head[ref].abs().sum() > 0
    assert torch_allclose(head[ref], head[resumed])


def torch_allclose(a, b) -> bool:
    import torch

    return torch.allclose(a.float(), b.float(), atol=1e-5)
