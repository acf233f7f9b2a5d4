"""Memory-lean training ops, exact in value: what autograd would keep for the backward pass is recomputed or
never materialised, and the arithmetic is the same.

- `SwiGLUDown`: `down_proj(silu(gate) * up)` of Llama-style MLPs, the down projection plain or LoRA. Autograd keeps
  four [tokens, intermediate] tensors per layer (gate, silu(gate), up, their product); this keeps gate and up and
  recomputes the two elementwise ones in the backward pass (about a third of a LoRA layer's activations).
- `linear_cross_entropy`: the LM head and the cross-entropy in chunks of rows, the gradient taken in the forward
  pass, so no [tokens, vocabulary] tensor outlives its chunk (with a 150k vocabulary that tensor is the largest
  one in a LoRA step).

Model layer; trainer.py applies both when `fused_ops` is on (the default).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data.tokenize import IGNORE

# Causal LMs whose forward is exactly `logits = lm_head(hidden[:, keep])` (no softcapping or logit scaling).
PLAIN_HEAD_MODELS = {"llama", "qwen2", "qwen3", "mistral", "glm4", "phi3"}
SWIGLU_MLPS = {"LlamaMLP", "Qwen2MLP", "Qwen3MLP", "MistralMLP"}  # forward: down(act(gate(x)) * up(x))
CE_CHUNK_ELEMENTS = 1 << 25  # rows per chunk = this / vocabulary: a 128 MB fp32 logits block


# ------------------------------------------------------------------------------------------------ SwiGLU MLP


def lora_parts(linear: nn.Module) -> tuple[Any, Any, Any, Any, float] | None:
    """(weight, bias, lora_A, lora_B, scaling) of a plain nn.Linear (no LoRA: A = B = None) or of a PEFT LoRA
    Linear with one active, unmerged adapter, no dropout, no DoRA and no LoRA bias; None for anything else."""
    if type(linear) is nn.Linear:
        return linear.weight, linear.bias, None, None, 1.0
    base = getattr(linear, "base_layer", None)
    if (
        type(base) is not nn.Linear
        or getattr(linear, "merged", True)
        or getattr(linear, "disable_adapters", True)
    ):
        return None
    active = list(getattr(linear, "active_adapters", []))
    if len(active) != 1 or active[0] not in getattr(linear, "lora_A", {}):  # OFT and others: not fused
        return None
    name = active[0]
    a, b = linear.lora_A[name], linear.lora_B[name]
    drop = linear.lora_dropout[name]
    no_dropout = isinstance(drop, nn.Identity) or (
        isinstance(drop, nn.Dropout) and (drop.p == 0 or not drop.training)
    )
    if linear.use_dora.get(name) or b.bias is not None or not no_dropout:
        return None
    return base.weight, base.bias, a.weight, b.weight, float(linear.scaling[name])


class SwiGLUDown(torch.autograd.Function):
    """y = h W^T + b + s (h A^T) B^T with h = silu(g) * u. Saved: g, u and h A^T ([tokens, rank])."""

    @staticmethod
    def forward(ctx, g, u, weight, bias, lora_a, lora_b, scaling):
        h = F.silu(g) * u
        y = F.linear(h, weight.to(h.dtype), None if bias is None else bias.to(h.dtype))
        ha = None
        if lora_a is not None:
            ha = F.linear(h, lora_a.to(h.dtype))
            y = y + F.linear(ha, lora_b.to(h.dtype)) * scaling
        ctx.save_for_backward(g, u, weight, bias, lora_a, lora_b, ha)
        ctx.scaling = scaling
        return y

    @staticmethod
    def backward(ctx, dy):
        g, u, weight, bias, lora_a, lora_b, ha = ctx.saved_tensors
        s = ctx.scaling
        dt = g.dtype
        dy = dy.to(dt)
        sig = torch.sigmoid(g)
        act = g * sig
        h = act * u
        flat_dy, flat_h = dy.reshape(-1, dy.shape[-1]), h.reshape(-1, h.shape[-1])
        d_weight = d_bias = d_a = d_b = None
        dh = dy @ weight.to(dt)
        if lora_a is not None:
            dha = (dy @ lora_b.to(dt)) * s
            dh = dh + dha @ lora_a.to(dt)
            if lora_a.requires_grad:
                d_a = (dha.reshape(-1, dha.shape[-1]).t() @ flat_h).to(lora_a.dtype)
            if lora_b.requires_grad:
                d_b = (flat_dy.t() @ ha.reshape(-1, ha.shape[-1]) * s).to(lora_b.dtype)
        if weight.requires_grad:
            d_weight = (flat_dy.t() @ flat_h).to(weight.dtype)
        if bias is not None and bias.requires_grad:
            d_bias = flat_dy.sum(0).to(bias.dtype)
        del h, flat_h
        du = dh * act
        # d silu(g) / dg = sig * (1 + g * (1 - sig)), the formula torch's silu backward uses
        dg = dh.mul_(u).mul_(sig * (1 + g * (1 - sig)))
        return dg, du, d_weight, d_bias, d_a, d_b, None


def swiglu_forward(mlp: nn.Module, original: Any) -> Any:
    def forward(x):
        parts = lora_parts(mlp.down_proj) if torch.is_grad_enabled() else None
        if parts is None:
            return original(x)
        return SwiGLUDown.apply(mlp.gate_proj(x), mlp.up_proj(x), *parts)

    return forward


def fuse_mlps(model: nn.Module) -> int:
    """Route the SwiGLU MLPs of a Llama-style model through SwiGLUDown (per call, only while gradients are
    on and the down projection is plain or plain LoRA); returns how many MLPs were switched."""
    n = 0
    for module in model.modules():
        if type(module).__name__ not in SWIGLU_MLPS or "forward" in vars(module):
            continue
        if type(getattr(module, "act_fn", None)).__name__ not in ("SiLU", "SiLUActivation"):
            continue
        module.forward = swiglu_forward(module, module.forward)
        n += 1
    return n


# ------------------------------------------------------------------------------------------- LM head + loss


class LinearCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of (hidden W^T + b) against targets, chunked over rows; gradients are computed per
    chunk in the forward pass and scaled by the incoming gradient in the backward pass."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk):
        n = hidden.shape[0]
        d_hidden = torch.empty_like(hidden) if hidden.requires_grad else None
        f32 = dict(dtype=torch.float32, device=weight.device)
        d_weight = torch.zeros(weight.shape, **f32) if weight.requires_grad else None
        d_bias = torch.zeros(bias.shape, **f32) if bias is not None and bias.requires_grad else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, n, chunk):
            h = hidden[start : start + chunk]
            t = targets[start : start + chunk]
            # no explicit casts: under autocast these matmuls run in its dtype, as the plain head's would
            logits = F.linear(h, weight, bias).float()
            lse = torch.logsumexp(logits, dim=-1)
            valid = t.ne(IGNORE)
            safe = t.masked_fill(~valid, 0)
            picked = logits.gather(1, safe[:, None]).squeeze(1)
            total += ((lse - picked) * valid).sum()
            # d loss / d logits = softmax - one_hot, zero on ignored rows
            grad = logits.sub_(lse[:, None]).exp_()
            grad[torch.arange(len(t), device=t.device), safe] -= 1
            grad = grad.mul_(valid[:, None]).to(weight.dtype)
            if d_hidden is not None:
                d_hidden[start : start + chunk] = grad @ weight
            if d_weight is not None:
                d_weight += (grad.t() @ h.to(weight.dtype)).float()
            if d_bias is not None:
                d_bias += grad.sum(0).float()
            del logits, grad
        ctx.save_for_backward(d_hidden, d_weight, d_bias)
        ctx.dtypes = (weight.dtype, None if bias is None else bias.dtype)
        return total

    @staticmethod
    def backward(ctx, d_total):
        d_hidden, d_weight, d_bias = ctx.saved_tensors
        w_dtype, b_dtype = ctx.dtypes
        return (
            None if d_hidden is None else d_hidden * d_total.to(d_hidden.dtype),
            None if d_weight is None else (d_weight * d_total).to(w_dtype),
            None if d_bias is None else (d_bias * d_total).to(b_dtype),
            None,
            None,
        )


def linear_cross_entropy(hidden: Any, head: nn.Linear, targets: Any) -> Any:
    """Summed cross-entropy of head(hidden) [N, H] against targets [N] (IGNORE skipped)."""
    chunk = max(1, CE_CHUNK_ELEMENTS // head.weight.shape[0])
    return LinearCrossEntropy.apply(hidden, head.weight, head.bias, targets, chunk)


def plain_head(model: nn.Module) -> nn.Linear | None:
    """The LM head when the model's logits are exactly `lm_head(hidden)` and it is a plain Linear (not a
    LoRA or modules_to_save wrapper); None otherwise."""
    inner = model
    for attr in ("module", "base_model", "model"):  # DDP, PeftModel, LoraModel
        if getattr(inner, "get_output_embeddings", None) is not None and hasattr(inner, "config"):
            break
        inner = getattr(inner, attr, inner)
    cfg = getattr(inner, "config", None)
    if getattr(cfg, "model_type", None) not in PLAIN_HEAD_MODELS:
        return None
    head = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    return head if type(head) is nn.Linear else None


@contextmanager
def hidden_states_out(head: nn.Linear) -> Iterator[None]:
    """While active, the head returns its input: the model's `logits` are the final hidden states of the kept
    positions, ready for linear_cross_entropy. The forward still runs through the whole (DDP-wrapped) model."""
    head.forward = lambda x: x  # instance attribute: state_dict and saving are untouched
    try:
        yield
    finally:
        del head.forward
