"""Batches: right padding, padding-free rows (block-diagonal mask), packing groups; padding-free == padded."""

from __future__ import annotations

import pytest
import torch

from tuneboard.data.collate import PadCollator, PaddingFreeCollator, block_causal_mask, pack_groups
from tuneboard.data.formats import ASSISTANT, USER, Conversation, Message
from tuneboard.data.templates.named import get_template
from tuneboard.data.tokenize import IGNORE, encode

F1 = {"input_ids": [5, 6, 7], "labels": [IGNORE, 6, 7]}
F2 = {"input_ids": [8, 9, 10, 11, 12], "labels": [IGNORE, IGNORE, 10, 11, 12]}
F3 = {"input_ids": [13, 14], "labels": [13, 14]}  # a first token with a label (train_on_prompt-like)


def test_pad_collator_right_pads_to_a_multiple_of_8():
    batch = PadCollator(pad_id=0)([F1, F2])
    assert batch["input_ids"].shape == (2, 8) and batch["input_ids"].dtype == torch.long
    assert batch["input_ids"].tolist() == [[5, 6, 7, 0, 0, 0, 0, 0], [8, 9, 10, 11, 12, 0, 0, 0]]
    assert batch["labels"].tolist()[0] == [IGNORE, 6, 7] + [IGNORE] * 5
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 0, 0, 0]]


def test_pad_collator_without_multiple():
    batch = PadCollator(pad_id=99, pad_to_multiple_of=None)([F1, F2])
    assert batch["input_ids"].tolist() == [[5, 6, 7, 99, 99], [8, 9, 10, 11, 12]]
    assert set(batch) == {"input_ids", "labels", "attention_mask"}


def test_padding_free_row():
    batch = PaddingFreeCollator()([F1, F2, F3])
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9, 10, 11, 12, 13, 14]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1, 2, 3, 4, 0, 1]]
    # the first label of each sample is ignored (it would be predicted from the previous sample)
    assert batch["labels"].tolist() == [[IGNORE, 6, 7, IGNORE, IGNORE, 10, 11, 12, IGNORE, 14]]
    mask = batch["attention_mask"]
    assert mask.shape == (1, 1, 10, 10) and mask.dtype == torch.float32
    allowed = (mask[0, 0] == 0).int()
    expected = torch.zeros(10, 10, dtype=torch.int)
    for a, b in ((0, 3), (3, 8), (8, 10)):
        expected[a:b, a:b] = torch.ones(b - a, b - a, dtype=torch.int).tril()
    assert torch.equal(allowed, expected)
    assert mask[0, 0, 3, 2] == torch.finfo(torch.float32).min  # no attention across samples


def test_padding_free_flash_uses_position_ids_only():
    batch = PaddingFreeCollator(flash=True)([F1, F2])
    assert "attention_mask" not in batch
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1, 2, 3, 4]]


def test_padding_free_accepts_packed_groups():
    batch = PaddingFreeCollator()([{"samples": [F1, F2]}, {"samples": [F3]}])
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1, 2, 3, 4, 0, 1]]


def test_block_causal_mask_single_sample_is_causal():
    mask = block_causal_mask([4], torch.float32)[0, 0]
    assert torch.equal(mask == 0, torch.ones(4, 4, dtype=torch.bool).tril())


def test_pack_groups_fill_up_to_cutoff_and_use_every_sample_once():
    lengths = [500, 300, 200, 120, 80, 60, 40, 10, 512]
    groups = pack_groups(lengths, 512, seed=1)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in g) <= 512 for g in groups)
    assert len(groups) == 4  # 1322 tokens need at least 3 bins; first-fit decreasing uses 4 here
    assert pack_groups(lengths, 512, seed=1) == groups
    assert sorted(map(sorted, pack_groups(lengths, 512, seed=2))) == sorted(map(sorted, groups))


# ---- padding-free loss and gradients equal the padded ones on the builtin tiny model


@pytest.fixture(scope="module")
def tiny_model(tiny_dir):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32, attn_implementation="sdpa")
    model.train()
    return model


@pytest.fixture(scope="module")
def samples(tiny_tokenizer):
    convs = [
        Conversation(
            [Message(USER, "番茄叶子发黄怎么办？"), Message(ASSISTANT, "先检查是否浇水过多，再看是否缺氮。")],
            system="你是园艺顾问。",
        ),
        Conversation(
            [
                Message(USER, "hi"),
                Message(ASSISTANT, "Hello!"),
                Message(USER, "Name a herb."),
                Message(ASSISTANT, "Basil."),
            ]
        ),
        Conversation(
            [
                Message(USER, "What is compost? " * 5),
                Message(ASSISTANT, "Decomposed organic matter that feeds the soil."),
            ]
        ),
    ]
    enc, _ = encode(convs, get_template("qwen"), tiny_tokenizer, cutoff_len=512)
    feats = [{"input_ids": i, "labels": lab} for i, lab in zip(enc["input_ids"], enc["labels"], strict=True)]
    assert len({len(f["input_ids"]) for f in feats}) == 3  # different lengths, so padding is real
    return feats


def loss_and_grads(model, batch):
    from tuneboard.train.stages.sft import labelled_loss

    model.zero_grad(set_to_none=True)
    loss, n_valid = labelled_loss(model, dict(batch))
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), n_valid, grads


def test_padding_free_loss_and_gradients_equal_padded(tiny_model, tiny_tokenizer, samples):
    padded = PadCollator(pad_id=tiny_tokenizer.pad_token_id)(samples)
    free = PaddingFreeCollator()(samples)
    loss_p, n_p, grads_p = loss_and_grads(tiny_model, padded)
    loss_f, n_f, grads_f = loss_and_grads(tiny_model, free)
    assert n_p == n_f == sum(sum(lab != IGNORE for lab in f["labels"][1:]) for f in samples)
    assert 1.0 < float(loss_p) < 20.0
    assert abs(float(loss_p) - float(loss_f)) < 1e-5
    assert grads_p.keys() == grads_f.keys() and len(grads_p) > 10
    worst = max(float((grads_p[n] - grads_f[n]).abs().max()) for n in grads_p)
    assert worst < 1e-5, worst
    assert max(float(g.abs().max()) for g in grads_p.values()) > 1e-3  # the gradients are not trivially zero


def test_the_comparison_detects_attention_across_samples(tiny_model, tiny_tokenizer, samples):
    """The equality above is not vacuous: a plain causal mask over the row (samples see each other) differs."""
    from tuneboard.train.stages.sft import labelled_loss

    padded = PadCollator(pad_id=tiny_tokenizer.pad_token_id)(samples)
    leaky = PaddingFreeCollator()(samples)
    leaky["attention_mask"] = block_causal_mask([leaky["input_ids"].shape[1]], torch.float32)
    with torch.no_grad():
        loss_p, _ = labelled_loss(tiny_model, dict(padded))
        loss_leaky, _ = labelled_loss(tiny_model, dict(leaky))
    assert abs(float(loss_p) - float(loss_leaky)) > 1e-3
