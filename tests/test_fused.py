"""model/fused.py: the lean SwiGLU MLP and the chunked LM-head loss give autograd's values and gradients,
keep less for the backward pass, and step aside for anything they do not cover."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tuneboard.data.collate import PadCollator, PaddingFreeCollator
from tuneboard.model import fused
from tuneboard.model.attention import use_packed_attention
from tuneboard.train.stages.sft import labelled_loss


def tiny_model(lora: dict | None = None):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tuneboard.model import tiny

    torch.manual_seed(0)
    m = AutoModelForCausalLM.from_pretrained(tiny.ensure(), dtype=torch.float32, attn_implementation="sdpa")
    if lora is not None:
        m = get_peft_model(m, LoraConfig(**{"r": 4, "lora_alpha": 8, "target_modules": "all-linear", **lora}))
        for name, p in m.named_parameters():
            if "lora_B" in name:  # PEFT starts B at zero; non-zero B makes every LoRA gradient non-trivial
                p.data.normal_(0, 0.05)
    m.train()
    return m


def features(seed=3):
    g = torch.Generator().manual_seed(seed)
    out = []
    for n, prompt in ((31, 9), (12, 4), (20, 17)):
        ids = torch.randint(10, 2000, (n,), generator=g).tolist()
        out.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return out


def loss_and_grads(model, inputs, fused_ops):
    model.zero_grad()
    loss, _ = labelled_loss(model, dict(inputs), fused=fused_ops)
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def assert_same(a, b, atol=1e-6):
    (loss_a, g_a), (loss_b, g_b) = a, b
    assert abs(loss_a - loss_b) < 1e-6
    assert g_a.keys() == g_b.keys() and g_a
    for name in g_a:
        assert torch.allclose(g_a[name], g_b[name], atol=atol), name


@pytest.mark.parametrize("finetuning", ["lora", "full"])
@pytest.mark.parametrize("collate", ["padded", "padding_free"])
def test_fused_training_step_equals_autograd(finetuning, collate):
    model = tiny_model({} if finetuning == "lora" else None)
    if collate == "padded":
        inputs = PadCollator(pad_id=0)(features())
    else:
        use_packed_attention(model)
        inputs = PaddingFreeCollator(varlen=True)(features())
    plain = loss_and_grads(model, inputs, False)
    n_layers = model.config.num_hidden_layers
    assert fused.fuse_mlps(model) == n_layers
    assert fused.fuse_mlps(model) == 0  # already switched: never wrapped twice
    assert fused.plain_head(model) is not None
    assert_same(loss_and_grads(model, inputs, True), plain)
    if finetuning == "full":  # the head is tied to the embeddings: both paths reach the one weight
        assert model.get_output_embeddings().weight is model.get_input_embeddings().weight


def saved_bytes(model, inputs, fused_ops):
    seen: dict[int, int] = {}
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss, _ = labelled_loss(model, dict(inputs), fused=fused_ops)
    return sum(seen.values())


def test_fused_ops_keep_less_for_backward():
    """Two [tokens, intermediate] tensors per layer and the [labelled, vocab] log-probabilities are not kept;
    the loss keeps its [labelled, hidden] gradient instead."""
    model = tiny_model({})
    use_packed_attention(model)
    inputs = PaddingFreeCollator(varlen=True)(features())
    before = saved_bytes(model, inputs, False)
    fused.fuse_mlps(model)
    after = saved_bytes(model, inputs, True)
    cfg = model.config
    tokens = inputs["input_ids"].numel()
    labelled = int(inputs["labels"][:, 1:].ne(-100).sum())
    mlp = 2 * tokens * cfg.intermediate_size * cfg.num_hidden_layers
    expected = 4 * (mlp + labelled * (cfg.vocab_size - cfg.hidden_size))
    assert before - after >= expected


def test_no_grad_forward_is_the_original():
    model = tiny_model({})
    ids = torch.randint(10, 2000, (1, 17))
    with torch.no_grad():
        ref = model(input_ids=ids).logits
        fused.fuse_mlps(model)
        assert torch.equal(model(input_ids=ids).logits, ref)


def test_linear_cross_entropy_in_chunks(monkeypatch):
    """Several chunks, ignored rows, a bias and a trainable weight: value and all three gradients."""
    torch.manual_seed(1)
    monkeypatch.setattr(fused, "CE_CHUNK_ELEMENTS", 7 * 50)  # 7 rows per chunk over a vocabulary of 50
    head = nn.Linear(16, 50)
    hidden = torch.randn(23, 16, requires_grad=True)
    targets = torch.randint(0, 50, (23,))
    targets[[0, 5, 6, 22]] = -100
    ours = fused.linear_cross_entropy(hidden, head, targets)
    g_ours = torch.autograd.grad(ours * 0.5, (hidden, head.weight, head.bias))
    ref = F.cross_entropy(head(hidden), targets, ignore_index=-100, reduction="sum")
    g_ref = torch.autograd.grad(ref * 0.5, (hidden, head.weight, head.bias))
    assert torch.allclose(ours, ref, atol=1e-5)
    for a, b in zip(g_ours, g_ref, strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_head_passthrough_is_undone():
    head = nn.Linear(4, 6)
    x = torch.randn(2, 4)
    with fused.hidden_states_out(head):
        assert torch.equal(head(x), x)
    assert head(x).shape == (2, 6)
    assert "forward" not in vars(head) and list(head.state_dict()) == ["weight", "bias"]


@pytest.mark.parametrize(
    "lora",
    [{"lora_dropout": 0.1}, {"use_dora": True}],
    ids=["dropout", "dora"],
)
def test_lora_variants_it_does_not_cover_use_autograd(lora):
    model = tiny_model(lora)
    down = model.base_model.model.model.layers[0].mlp.down_proj
    assert fused.lora_parts(down) is None
    with torch.no_grad():
        assert fused.lora_parts(down) is None


def test_heads_it_does_not_cover():
    """A softcapped or scaled head (another model family) and a LoRA-wrapped lm_head keep the plain loss."""
    model = tiny_model({})
    assert fused.plain_head(model) is not None
    model.base_model.model.config.model_type = "gemma2"
    assert fused.plain_head(model) is None
    model.base_model.model.config.model_type = "qwen2"
    wrapped = tiny_model({"target_modules": ["q_proj", "lm_head"]})
    assert fused.plain_head(wrapped) is None


def test_under_bf16_autocast_matches_autograd():
    """Mixed precision (as `bf16: true` trains): same dtypes as autograd's path, values within bf16 rounding."""
    model = tiny_model({})
    inputs = PadCollator(pad_id=0)(features())

    def run(fused_ops):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return loss_and_grads(model, inputs, fused_ops)

    plain = run(False)
    fused.fuse_mlps(model)
    ours = run(True)
    assert abs(ours[0] - plain[0]) < 2e-2 * abs(plain[0])
    for name, g in plain[1].items():
        assert ours[1][name].dtype == g.dtype == torch.float32
        assert (ours[1][name] - g).norm() <= 3e-2 * g.norm() + 1e-6, name
