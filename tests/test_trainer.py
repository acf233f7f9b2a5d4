"""The training loss: projecting only labelled positions gives the plain causal-LM loss and gradients."""

from __future__ import annotations

import pytest
import torch

from tuneboard.data.collate import PadCollator
from tuneboard.train.stages.sft import labelled_loss


@pytest.fixture(scope="module")
def model():
    from transformers import AutoModelForCausalLM

    from tuneboard.model import tiny

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny.ensure(), dtype=torch.float32)


def batch():
    g = torch.Generator().manual_seed(3)
    feats = []
    for n, prompt in ((20, 12), (9, 4), (15, 15 - 3)):
        ids = torch.randint(10, 2000, (n,), generator=g).tolist()
        feats.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return PadCollator(pad_id=0)(feats)


def grads(model):
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def test_labelled_loss_equals_plain_loss_and_gradients(model):
    inputs = batch()
    model.zero_grad()
    plain = model(**inputs).loss  # transformers' own shifted cross-entropy, mean over labelled tokens
    plain.backward()
    g_plain = grads(model).clone()
    model.zero_grad()
    ours, n = labelled_loss(model, dict(inputs))
    ours.backward()
    assert n == int(inputs["labels"][:, 1:].ne(-100).sum())
    assert abs(ours.item() - plain.item()) < 1e-5
    assert torch.allclose(grads(model), g_plain, atol=1e-5)


def test_num_items_in_batch_normalises_across_accumulation(model):
    inputs = batch()
    total, n = labelled_loss(model, dict(inputs))
    scaled, _ = labelled_loss(model, dict(inputs), num_items=2 * n)
    assert abs(scaled.item() - total.item() / 2) < 1e-6


def test_packed_attention_padding_free_equals_padded():
    """Padding-free rows with per-sample attention (varlen) give the padded batch's loss and gradients, and
    the model still runs padded batches (plain SDPA with its mask) after the switch."""
    from transformers import AutoModelForCausalLM

    from tuneboard.data.collate import PaddingFreeCollator
    from tuneboard.model import tiny
    from tuneboard.model.attention import PACKED_ATTENTION, use_packed_attention

    torch.manual_seed(0)
    m = AutoModelForCausalLM.from_pretrained(tiny.ensure(), dtype=torch.float32, attn_implementation="sdpa")
    g = torch.Generator().manual_seed(5)
    feats = []
    for n, prompt in ((23, 9), (7, 3), (16, 5), (1, 0)):
        ids = torch.randint(10, 2000, (n,), generator=g).tolist()
        feats.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})

    def run(inputs):
        m.zero_grad()
        loss, n = labelled_loss(m, dict(inputs))
        loss.backward()
        return loss.item(), n, grads(m).clone()

    padded = PadCollator(pad_id=0)(feats)
    loss_p, n_p, g_p = run(padded)
    use_packed_attention(m)
    assert m.config._attn_implementation == PACKED_ATTENTION
    free = PaddingFreeCollator(varlen=True)(feats)
    assert "attention_mask" not in free and free["cu_seq_lens_q"].tolist() == [0, 23, 30, 46, 47]
    loss_f, n_f, g_f = run(free)
    assert n_p == n_f and abs(loss_p - loss_f) < 1e-5
    assert torch.allclose(g_p, g_f, atol=1e-5)
    loss_p2, _, g_p2 = run(padded)
    assert abs(loss_p2 - loss_p) < 1e-5 and torch.allclose(g_p2, g_p, atol=1e-5)


def test_group_by_length_pads_less(model, tmp_path):
    """group_by_length: the same samples, each seen once per epoch, in batches of similar lengths."""
    from transformers import AutoTokenizer

    from tuneboard.config import Config
    from tuneboard.data.pipeline import DataBundle, TokenizedSet
    from tuneboard.data.tokenize import EncodeStats
    from tuneboard.model import tiny
    from tuneboard.train.arguments import training_args
    from tuneboard.train.stages.sft import SFTTrainer

    g = torch.Generator().manual_seed(0)
    rows = [list(range(10, 10 + int(n))) for n in torch.randint(4, 300, (96,), generator=g)]
    data = TokenizedSet.from_lists({"input_ids": rows, "labels": rows}, EncodeStats())
    tok = AutoTokenizer.from_pretrained(tiny.ensure())
    padding, seen = {}, {}
    for grouped in (False, True):
        cfg = Config(
            output_dir=str(tmp_path / str(grouped)), per_device_train_batch_size=8, group_by_length=grouped
        )
        trainer = SFTTrainer(
            model, training_args(cfg, "fp32", False), DataBundle(data, None, "chatml", False), tok, cfg
        )
        batches = list(trainer.get_train_dataloader())
        mask = [b["attention_mask"] for b in batches]
        padding[grouped] = 1 - sum(int(m.sum()) for m in mask) / sum(m.numel() for m in mask)
        seen[grouped] = sorted(int(n) for m in mask for n in m.sum(dim=1))
    assert seen[True] == seen[False] == sorted(len(r) for r in rows)
    assert padding[True] < 0.6 * padding[False], padding  # HF groups within megabatches: some padding stays


def test_a_template_that_does_not_render_tool_definitions_is_named(tmp_path, capsys):
    import json

    from tuneboard import config
    from tuneboard.data.templates.hf_jinja import JinjaTemplate
    from tuneboard.data.templates.named import get_template
    from tuneboard.train import workflow as train

    data = tmp_path / "tools.json"
    tool = [{"name": "get_weather", "parameters": {"type": "object", "properties": {}}}]
    records = [{"instruction": "天气？", "output": "晴", "tools": tool}] * 2 + [
        {"instruction": "hi", "output": "ok"}
    ]
    data.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    cfg, _ = config.from_dict(
        {"model_name_or_path": "builtin:tiny", "dataset": str(data), "output_dir": str(tmp_path / "out")}
    )
    convs = train.preflight(cfg)
    assert len(convs[0]) == 3
    train.warn_unrendered_tools(convs, get_template("qwen"))
    assert capsys.readouterr().err == ""
    train.warn_unrendered_tools(convs, get_template("llama3"))
    err = capsys.readouterr().err
    assert (
        "warning: 2 records carry tools (function definitions), which template llama3 does not render" in err
    )
    train.warn_unrendered_tools(convs, JinjaTemplate("{% for m in messages %}{{ m['content'] }}{% endfor %}"))
    assert "which template auto does not render" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["lora", "freeze", "full"])
def test_predictions_after_training_load_what_was_trained(method):
    """do_train + do_predict: the prediction reads the run's output (before, full and freeze predicted with the
    untrained base model)."""
    from tuneboard.config import from_dict
    from tuneboard.train.workflow import trained_model_config

    cfg, _ = from_dict({"finetuning_type": method, "output_dir": "saves/x", "resume_from_checkpoint": "true"})
    after = trained_model_config(cfg)
    if method == "lora":
        assert (after.model_name_or_path, after.adapter_name_or_path) == ("builtin:tiny", "saves/x")
    else:
        assert (after.model_name_or_path, after.adapter_name_or_path) == ("saves/x", None)
    assert after.resume_from_checkpoint is None
