"""Training memory estimate (weights, gradients, optimizer states, activations) and advice on what fits.
Checked before a run by `tuneboard env` / `estimate`; pure arithmetic (docs/memory_estimate.md), no torch."""

from __future__ import annotations

import glob
import json
import os
import re
from dataclasses import asdict, dataclass, field

GIB = 1024**3
METHODS = ("lora", "qlora", "freeze", "full")
PRECISIONS = ("fp32", "bf16", "fp16")
OPTIMIZERS = {"adamw": 8, "adamw_8bit": 2, "sgd": 0}  # optimizer-state bytes per trainable parameter
QLORA_BYTES = 4.127 / 8  # NF4 + double-quantized block constants (Dettmers et al. 2023, sec. 3)
LOGIT_BYTES = 12  # per logit element: fp32 log-probs saved + their gradient + the logits' gradient
CUDA_CONTEXT = 1 * GIB  # CUDA context, cuBLAS workspace, kernels: seen by nvidia-smi, not by torch
DS_BUCKET = 5e8 * 2  # DeepSpeed ZeRO-1/2 reduce bucket: default 5e8 elements in 16 bits
DS_LIVE_PARAMS = 1e9 * 2  # DeepSpeed ZeRO-3 gathered weights: stage3_max_live_parameters default 1e9

# Public config.json values: hidden, layers, intermediate, vocab, heads, kv heads, tied embeddings.
_SHAPE_KEYS = ("hidden_size", "num_layers", "intermediate_size", "vocab_size", "num_heads", "num_kv_heads")
KNOWN_SHAPES: dict[str, dict] = {
    name: dict(zip(_SHAPE_KEYS, values[:6], strict=True), tie_word_embeddings=values[6])
    for name, values in {
        "qwen2.5-0.5b": (896, 24, 4864, 151936, 14, 2, True),
        "qwen2.5-1.5b": (1536, 28, 8960, 151936, 12, 2, True),
        "qwen2.5-7b": (3584, 28, 18944, 152064, 28, 4, False),
        "llama-3-8b": (4096, 32, 14336, 128256, 32, 8, False),
        "glm-4-9b": (4096, 40, 13696, 151552, 32, 2, False),
    }.items()
}


@dataclass
class Estimate:
    """Peak GPU memory of one training process, in bytes, split by what holds it."""

    weights: int
    gradients: int
    optimizer_states: int
    activations: int  # the one that applies (with or without gradient checkpointing)
    activations_with_gc: int
    activations_without_gc: int
    overhead: int
    total: int
    params: int
    trainable_params: int
    cpu_offloaded: int = 0
    inputs: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def parse_model_size(text: str | float | int) -> float:
    """'7B' -> 7e9, '0.5b' -> 5e8, '350M' -> 3.5e8; a plain number is returned as is."""
    if isinstance(text, int | float):
        return float(text)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmbt]?)\s*", str(text), re.IGNORECASE)
    if not m:
        raise ValueError(f"cannot read a model size from {text!r}: expected e.g. '7B', '0.5b', '350M'")
    scale = {"": 1, "k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}[m.group(2).lower()]
    return float(m.group(1)) * scale


def _dims(shape: dict) -> tuple[int, int, int, int, int, int, int]:
    h, n_layers, inter = shape["hidden_size"], shape["num_layers"], shape["intermediate_size"]
    heads = shape.get("num_heads") or max(1, h // 128)
    kv_heads = shape.get("num_kv_heads") or heads
    head_dim = shape.get("head_dim") or h // heads
    return h, n_layers, inter, shape["vocab_size"], heads, heads * head_dim, kv_heads * head_dim


def layer_params(shape: dict) -> int:
    """Parameters of one decoder layer: attention (q, k, v, o), MLP (gated: 3 matrices), 2 norms."""
    h, _, inter, _, _, q, kv = _dims(shape)
    mlp = (3 if shape.get("gated_mlp", True) else 2) * h * inter
    return h * q + 2 * h * kv + q * h + mlp + 2 * h


def embedding_params(shape: dict) -> int:
    """Input embedding plus the output head (unless tied)."""
    tied = shape.get("tie_word_embeddings", False)
    return shape["vocab_size"] * shape["hidden_size"] * (1 if tied else 2)


def count_params(shape: dict) -> int:
    return shape["num_layers"] * layer_params(shape) + embedding_params(shape) + shape["hidden_size"]


def shape_for_params(params: float) -> dict:
    """A plausible LLaMA-like shape for a bare parameter count (head_dim 128, depth ~ hidden/128)."""
    vocab = 128000
    h = 1024
    for _ in range(20):  # solve 12*L*h^2 + 2*V*h = params with L = h/128
        h = max(256.0, ((params - 2 * vocab * h) * 128 / 12) ** (1 / 3) if params > 2 * vocab * h else 256.0)
    h = int(round(h / 128)) * 128 or 128
    values = (h, max(1, round(h / 128)), int(h * 8 / 3 / 64) * 64, vocab, h // 128, h // 128)
    return dict(zip(_SHAPE_KEYS, values, strict=True))


def shape_from_config(path_or_dict: str | os.PathLike | dict) -> dict:
    """Model shape and parameter count from a config.json: a dict, a file, a local directory,
    or a hub id found in the local Hugging Face cache (~/.cache/huggingface/hub). No network."""
    cfg = path_or_dict if isinstance(path_or_dict, dict) else _load_config(str(path_or_dict))
    cfg = {**cfg, **cfg.get("text_config", {})}  # multimodal configs nest the language model

    def pick(*keys, default=None):
        return next((cfg[k] for k in keys if cfg.get(k) is not None), default)

    h = pick("hidden_size", "n_embd", "d_model")
    n_layers = pick("num_hidden_layers", "num_layers", "n_layer")
    vocab = pick("vocab_size", "padded_vocab_size")
    if not (h and n_layers and vocab):
        raise ValueError("config.json lacks hidden_size / num_hidden_layers / vocab_size")
    heads = pick("num_attention_heads", "n_head", default=max(1, h // 128))
    kv = pick("num_key_value_heads", "n_head_kv", default=heads)
    if cfg.get("multi_query_attention") and cfg.get("multi_query_group_num"):
        kv = cfg["multi_query_group_num"]  # GLM
    inter = pick("moe_intermediate_size", "intermediate_size", "ffn_hidden_size", "n_inner", default=4 * h)
    if cfg.get("model_type") == "qwen":  # Qwen-1 stores twice the width of each MLP branch
        inter //= 2
    plain_mlp = ("gpt2", "gpt_neox", "gptj", "opt", "bloom", "phi", "gpt_bigcode", "falcon", "starcoder2")
    shape = dict(zip(_SHAPE_KEYS, (h, n_layers, inter, vocab, heads, kv), strict=True))
    shape.update(
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings")),
        gated_mlp=cfg.get("model_type") not in plain_mlp,
    )
    if cfg.get("head_dim"):
        shape["head_dim"] = cfg["head_dim"]
    experts = pick("num_experts", "num_local_experts", "n_routed_experts", default=1) or 1
    params = count_params(shape)
    if experts > 1:  # mixture of experts: every expert's weights are resident
        mlp = (3 if shape["gated_mlp"] else 2) * h * inter
        params += n_layers * mlp * (experts - 1)
    shape["params"] = params
    return shape


def _load_config(ref: str) -> dict:
    if os.path.isfile(ref):
        path = ref
    elif os.path.isfile(os.path.join(ref, "config.json")):
        path = os.path.join(ref, "config.json")
    else:
        hub = os.environ.get("HF_HUB_CACHE") or os.path.join(
            os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")), "hub"
        )
        found = sorted(
            glob.glob(
                os.path.join(hub, "models--" + ref.replace("/", "--"), "snapshots", "*", "config.json")
            ),
            key=os.path.getmtime,
        )
        if not found:
            raise FileNotFoundError(f"no config.json for {ref!r}: not a file, a directory, nor in {hub}")
        path = found[-1]
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def lookup_shape(name: str) -> dict | None:
    """A known shape by name ('Qwen/Qwen2.5-7B-Instruct' -> qwen2.5-7b), else None."""
    key = name.lower().rsplit("/", 1)[-1].replace("meta-", "")
    key = re.sub(r"^llama-?3(\.\d)?-", "llama-3-", key)
    for known, shape in KNOWN_SHAPES.items():
        if key.startswith(known):
            return {**shape, "params": count_params(shape)}
    return None


def resolve_model(ref: str | float) -> tuple[float, dict | None]:
    """(parameter count, shape or None) for '7B', a local model directory, a hub id in the local
    cache, or a known model name. Raises ValueError when none of these applies."""
    try:
        return parse_model_size(ref), None
    except ValueError:
        pass
    try:
        shape = shape_from_config(str(ref))
    except (OSError, ValueError):
        shape = lookup_shape(str(ref))
    if not shape:
        raise ValueError(
            f"cannot size {ref!r}: give a size such as '7B', a local model directory, "
            "or download the model first"
        )
    return float(shape["params"]), shape


def _activations(
    shape: dict, seq: int, batch: int, act_bytes: int, flash: bool, layers: int, logit_bytes: float, gc: bool
) -> int:
    """Saved activations of `layers` trainable decoder layers plus the output head and loss.
    Per layer and token, 16-bit (Korthikanti et al. 2022, adapted to RMSNorm + SwiGLU + GQA, no dropout):
    12h + 4q + 4kv + 8i bytes; eager attention also stores the scores, 5*a*s bytes (their term)."""
    h, n_layers, inter, vocab, heads, q, kv = _dims(shape)
    scale = act_bytes / 2
    mlp = 8 * inter if shape.get("gated_mlp", True) else 4 * inter + 2 * h
    per_token = (12 * h + 4 * q + 4 * kv + mlp) * scale  # fp32 norm inputs already counted as 4h each
    if not flash:
        per_token += 5 * heads * seq * scale
    layer = seq * batch * per_token
    head = seq * batch * (6 * h * scale + logit_bytes * vocab)  # final norm + lm_head input + loss
    if gc:  # keep each layer's input; recompute one layer, which also holds its gradient buffers
        return int(layers * seq * batch * h * act_bytes + 2 * layer + head)
    return int(layers * layer + head)


def _trainable_state(n: float, precision: str, opt: int, zero: int, gpus: int) -> tuple[float, float, float]:
    """(weights, gradients, optimizer states) in bytes for n trainable parameters on one GPU."""
    if precision == "fp32":
        w, g, o, g32 = 4 * n, 4 * n, opt * n, 0.0
    elif zero:  # DeepSpeed: 16-bit weights and grads, fp32 master in the optimizer (ZeRO paper),
        w, g, o, g32 = 2 * n, 2 * n, (opt + 4) * n, 4 * n / gpus  # and an fp32 gradient partition
    else:  # torch AMP: fp32 weights and grads plus the 16-bit copy autocast makes (HF "GPU memory usage")
        w, g, o, g32 = 6 * n, 4 * n, opt * n, 0.0
    gpus = max(1, gpus) if zero else 1
    return (w / gpus if zero >= 3 else w), (g / gpus if zero >= 2 else g) + g32, o / gpus


def estimate(
    params: float | str | None,
    method: str = "lora",
    precision: str = "bf16",
    cutoff_len: int = 1024,
    batch_size: int = 1,
    gradient_checkpointing: bool = True,
    model_shape: dict | None = None,
    *,
    lora_rank: int = 8,
    freeze_trainable_layers: int = 2,
    optimizer: str = "adamw",
    flash_attention: bool = True,
    num_gpus: int = 1,
    zero_stage: int = 0,
    offload: bool = False,
    logit_bytes: float = LOGIT_BYTES,
    upcast_unquantized: bool = False,
) -> Estimate:
    """Peak memory per GPU for one training configuration. Defaults follow tuneboard / LLaMA-Factory:
    LoRA on all linear layers, trainable weights in fp32 under autocast, AdamW, flash/SDPA attention,
    loss computed in fp32 (`logit_bytes` 12). `upcast_unquantized`: QLoRA with peft's
    prepare_model_for_kbit_training, which keeps embeddings and head in fp32. See docs/memory_estimate.md."""
    inputs = dict(locals())  # the arguments, so that advise() can vary one of them
    choices = dict(method=METHODS, precision=PRECISIONS, optimizer=tuple(OPTIMIZERS), zero_stage=(0, 1, 2, 3))
    for name, allowed in choices.items():
        value = inputs[name]
        if value not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(map(str, allowed))}, got {value!r}")
    if cutoff_len < 1 or batch_size < 1:
        raise ValueError("cutoff_len and batch_size must be at least 1")
    n = parse_model_size(params) if params else float((model_shape or {}).get("params") or 0)
    shape = dict(model_shape) if model_shape else None
    if not n:
        if not shape:
            raise ValueError("give a parameter count or a model shape")
        n = float(count_params(shape))
    shape = shape or shape_for_params(n)
    h, n_layers, inter, _, _, q, kv = _dims(shape)
    gpus = max(1, num_gpus)

    if method == "full":
        trainable, layers_with_grad, frozen = n, n_layers, 0.0
    elif method == "freeze":  # LLaMA-Factory trains the last `freeze_trainable_layers` layers
        trainable = min(n, freeze_trainable_layers * layer_params(shape))
        layers_with_grad = min(n_layers, freeze_trainable_layers)
        frozen = (n - trainable) * (4 if precision == "fp32" else 2)
    else:  # LoRA on q, k, v, o, gate, up, down: rank * (in + out) per matrix
        gated = shape.get("gated_mlp", True)
        per_layer = (7 * h + 3 * inter if gated else 5 * h + 2 * inter) + 2 * q + 2 * kv
        trainable, layers_with_grad = lora_rank * per_layer * n_layers, n_layers
        emb = min(embedding_params(shape), n / 2)
        if method == "qlora":
            frozen = (n - emb) * QLORA_BYTES + emb * (4 if upcast_unquantized else 2)
        else:
            frozen = n * (4 if precision == "fp32" else 2)
    if zero_stage >= 3:
        frozen /= gpus
    w, g, o = _trainable_state(trainable, precision, OPTIMIZERS[optimizer], zero_stage, gpus)
    w += frozen
    offloaded = 0
    if offload and zero_stage:
        offloaded, o = int(o), 0

    act_bytes = 4 if precision == "fp32" else 2
    args = (shape, cutoff_len, batch_size, act_bytes, flash_attention, layers_with_grad, logit_bytes)
    act_gc, act_full = _activations(*args, gc=True), _activations(*args, gc=False)
    act = act_gc if gradient_checkpointing else act_full
    w, g, o = int(w), int(g), int(o)
    overhead = CUDA_CONTEXT
    if zero_stage in (1, 2):
        overhead += DS_BUCKET
    elif zero_stage == 3 and gpus > 1:
        overhead += min(DS_LIVE_PARAMS, frozen * gpus + trainable * 2)
    overhead = int(overhead)
    total = w + g + o + act + overhead
    fields = (w, g, o, act, act_gc, act_full, overhead, total, int(n), int(trainable), offloaded, inputs)
    return Estimate(*fields)
