"""LLaMA-Factory's stage, method and optimizer keys, tokenized_path (DPO/KTO, DoRA, rsLoRA, PiSSA, LoRA+, OFT, freeze modules, LLaMA-Pro, NEFTune,
GaLore, APOLLO) and the TrainingArguments options people paste, declared once with help text; config.Config
inherits them. Also the keys tuneboard cannot run here, each refused in one line saying why.

Lowest layer, beside config.py and keys.py: no torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError
from .keys import group

_model, _method, _data, _train = group("model"), group("method"), group("data"), group("train")

# LLaMA-Factory keys that cannot run in tuneboard: set to anything but false/empty, they stop with this reason
REFUSED_KEYS = {
    "use_mca": "Megatron-Core (mcore_adapter) needs several GPUs and its own package; not supported",
    "use_hyper_parallel": "hyper-parallel training needs several GPUs; not supported",
    "mixture_of_depths": "mixture-of-depths conversion (the MoD package) is not supported",
    "use_unsloth_gc": "Unsloth's gradient checkpointing needs the unsloth package and a CUDA GPU; not supported",
    "ray_num_workers": "Ray training is not supported; run `tuneboard train` on each machine (torchrun)",
    "ray_run_name": "Ray training is not supported; run `tuneboard train` on each machine (torchrun)",
    "quantization_method": "only bitsandbytes (quantization_bit: 4 or 8, CUDA) is supported; "
    "hqq / eetq / GPTQ / AWQ quantizers need their GPU packages",
    "fsdp": "FSDP is not supported; use deepspeed or a single process",
    "fp8": "FP8 training needs an FP8 GPU (H100 or newer) and transformer-engine or torchao; not supported",
}
# companions of a refused key, accepted and ignored when that key is off (badam_mode with use_badam: false)
REFUSED_PREFIXES = {
    "ray_": "Ray",
    "fp8_": "fp8",
}
REFUSED_QUIET = {"quantization_method": "bnb", "fsdp": ""}  # values that mean "off" besides false/empty
ROPE_KINDS = ("linear", "dynamic", "yarn", "llama3")  # transformers' RoPE types that LLaMA-Factory offers
PREF_LOSSES = ("sigmoid", "hinge", "ipo", "orpo", "simpo")
JSON_KEYS = {"lr_scheduler_kwargs"}  # a mapping in YAML, kept as JSON text


def refused(key: str, value: Any, where: str) -> str | None:
    """A refused key set on: raises; a refused key left off or a companion of one: the note to show; else None."""
    off = value in (None, False, "", 0, "false", "False") or str(value) == REFUSED_QUIET.get(key, "\0")
    if key in REFUSED_KEYS:
        if not off:
            raise ConfigError(f"{where}: '{key}': {REFUSED_KEYS[key]}")
        return f"{where}: '{key}' is ignored ({'off' if value in (None, False, '') else 'the default'})"
    for prefix, owner in REFUSED_PREFIXES.items():
        if key.startswith(prefix):
            return f"{where}: '{key}' is ignored ({owner} is not supported)"
    return None


def as_json_text(key: str, value: Any, where: str) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ConfigError(f"{where}: '{key}' must be a mapping (YAML or JSON), got {value!r}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: '{key}' must be a mapping (YAML or JSON), got {value!r}")
    return json.dumps(value)


@dataclass
class MethodKeys:
    """Keys of the preference stages, of the training methods beyond plain LoRA / freeze / full, and
    TrainingArguments options."""

    pref_beta: float = _method(
        0.1, "dpo/kto: beta, how far the policy may move from the reference (higher: less)"
    )
    pref_loss: str = _method(
        "sigmoid",
        "dpo: preference loss: sigmoid (DPO), hinge, ipo, orpo (no reference model), simpo (no reference model)",
        PREF_LOSSES,
    )
    pref_ftx: float = _method(
        0.0,
        "dpo/kto: weight of an SFT loss on the chosen (kto: desirable) replies added to the preference loss",
    )
    dpo_label_smoothing: float = _method(
        0.0, "dpo sigmoid loss: probability that a pair's labels are flipped, in [0, 0.5]"
    )
    simpo_gamma: float = _method(0.5, "simpo: target reward margin gamma")
    kto_chosen_weight: float = _method(1.0, "kto: weight of the loss on desirable replies")
    kto_rejected_weight: float = _method(1.0, "kto: weight of the loss on undesirable replies")
    use_dft_loss: bool = _method(
        False, "sft: DFT loss, each token's cross-entropy weighted by its (constant) predicted probability"
    )
    rope_scaling: str | None = _model(
        None,
        "longer context by RoPE scaling: linear, dynamic, yarn or llama3 (factor ceil(cutoff_len / the model's "
        "length); kept in chat, eval and exports)",
    )
    use_eaft_loss: bool = _method(
        False, "sft: EAFT loss, each token's cross-entropy weighted by (top-20 entropy / 3) ** eaft_alpha"
    )
    eaft_alpha: float = _method(1.0, "EAFT: power of the entropy weight")
    use_asft_loss: bool = _method(
        False,
        "sft: ASFT loss, the DFT loss plus asft_alpha x KL(reference || model) on the labelled tokens (the "
        "reference: LoRA's base with the adapter off, else a frozen copy)",
    )
    asft_alpha: float = _method(0.1, "ASFT: weight of the KL term that anchors the model to its reference")
    tokenized_path: str | None = _data(
        None,
        "directory of the tokenized sets: written (then the run stops, as in LLaMA-Factory) when absent, "
        "read instead of tokenizing when present",
    )
    quantization_type: str = _method(
        "nf4", "QLoRA: 4-bit data type of bitsandbytes (quantization_bit: 4)", ("nf4", "fp4")
    )
    double_quantization: bool = _method(
        True, "QLoRA: bitsandbytes double quantization, the 4-bit scales quantized too (quantization_bit: 4)"
    )
    use_dora: bool = _method(False, "LoRA: weight-decomposed LoRA (DoRA): a trained magnitude per output")
    use_rslora: bool = _method(False, "LoRA: rank-stabilised scaling alpha/sqrt(r) instead of alpha/r")
    pissa_init: bool = _method(
        False, "LoRA: PiSSA, adapters initialised from the principal singular vectors of each weight"
    )
    pissa_iter: int = _method(16, "PiSSA: iterations of the fast SVD (-1: exact SVD)")
    pissa_convert: bool = _method(
        True, "PiSSA: save the adapter converted to a plain LoRA of the original base (always done)"
    )
    loraplus_lr_ratio: float | None = _method(
        None, "LoRA+: the B matrices learn at learning_rate x this ratio (e.g. 16)"
    )
    loraplus_lr_embedding: float = _method(1e-6, "LoRA+: learning rate of LoRA embedding layers")
    create_new_adapter: bool = _method(
        False, "with adapter_name_or_path: merge all of them and train a new adapter"
    )
    oft_rank: int = _method(0, "OFT: number of blocks per layer (0: set by oft_block_size)")
    oft_block_size: int = _method(32, "OFT: size of each orthogonal block (0: set by oft_rank)")
    oft_target: str = _method("all", "OFT: modules given adapters: all (every linear layer) or names")
    module_dropout: float = _method(0.0, "OFT: probability of dropping a whole block in training")
    freeze_trainable_modules: str = _method(
        "all", "freeze: modules trained in the chosen layers: all or names such as mlp,self_attn"
    )
    freeze_extra_modules: str | None = _method(
        None, "freeze: modules outside the layers also trained, such as embed_tokens,norm"
    )
    use_llama_pro: bool = _method(
        False, "freeze: LLaMA-Pro, train only the expanded blocks (every n/freeze_trainable_layers-th)"
    )
    neftune_noise_alpha: float | None = _train(
        None, "NEFTune: noise of this scale on the input embeddings in training (e.g. 5)"
    )
    use_galore: bool = _train(False, "GaLore: low-rank gradient projection (package galore-torch)")
    galore_target: str = _train("all", "GaLore: modules it applies to: all (linear layers) or names")
    galore_rank: int = _train(16, "GaLore: rank of the projection")
    galore_update_interval: int = _train(200, "GaLore: steps between projection updates")
    galore_scale: float = _train(2.0, "GaLore: scale of the projected update")
    galore_proj_type: str = _train(
        "std", "GaLore: projection type", ("std", "reverse_std", "right", "left", "full")
    )
    galore_layerwise: bool = _train(False, "GaLore: update layer by layer (less memory)")
    use_apollo: bool = _train(False, "APOLLO: approximated gradient scaling (package apollo-torch)")
    apollo_target: str = _train("all", "APOLLO: modules it applies to: all (linear layers) or names")
    apollo_rank: int = _train(16, "APOLLO: rank of the auxiliary space")
    apollo_update_interval: int = _train(200, "APOLLO: steps between projection updates")
    apollo_scale: float = _train(32.0, "APOLLO: scale of the update")
    apollo_proj: str = _train("random", "APOLLO: projection: random or svd", ("random", "svd"))
    apollo_proj_type: str = _train("std", "APOLLO: projection type", ("std", "right", "left"))
    apollo_scale_type: str = _train("channel", "APOLLO: scaling: channel or tensor", ("channel", "tensor"))
    apollo_layerwise: bool = _train(False, "APOLLO: update layer by layer (less memory)")
    apollo_scale_front: bool = _train(False, "APOLLO: scale the gradient before the norm-growth limiter")
    use_badam: bool = _train(False, "BAdam: train one block of layers at a time (package badam; full)")
    badam_mode: str = _train(
        "layer", "BAdam: layer (one decoder layer at a time) or ratio", ("layer", "ratio")
    )
    badam_start_block: int | None = _train(
        None, "BAdam layer mode: the block trained first (default: by mode)"
    )
    badam_switch_mode: str = _train(
        "ascending", "BAdam layer mode: order of the blocks", ("ascending", "descending", "random", "fixed")
    )
    badam_switch_interval: int = _train(50, "BAdam layer mode: steps before the next block is trained")
    badam_update_ratio: float = _train(0.05, "BAdam ratio mode: share of each matrix updated")
    badam_mask_mode: str = _train("adjacent", "BAdam ratio mode: which entries", ("adjacent", "scatter"))
    badam_verbose: int = _train(0, "BAdam: 0 quiet, 1 block switches, 2 trainable parameters too")
    use_adam_mini: bool = _train(
        False, "Adam-mini: one second moment per block of weights (package adam-mini)"
    )
    use_muon: bool = _train(
        False, "Muon (torch.optim.Muon) for the weight matrices inside the layers, AdamW for the rest"
    )
    adam_beta1: float = _train(0.9, "Adam beta1 (first-moment decay)")
    adam_beta2: float = _train(0.999, "Adam beta2 (second-moment decay)")
    adam_epsilon: float = _train(1e-8, "Adam epsilon")
    optim_args: str | None = _train(None, "extra optimizer arguments, e.g. 'momentum=0.9' (transformers)")
    lr_scheduler_kwargs: str | None = _train(
        None, "extra scheduler arguments, a mapping such as {min_lr: 1e-6}"
    )
    torch_compile: bool = _train(False, "compile the model with torch.compile (slow start, faster steps)")
    logging_first_step: bool = _train(False, "log the loss of the first step too")


# method keys passed to TrainingArguments under the same name (train/arguments.py)
TRAINING_ARGUMENTS = (
    "adam_beta1", "adam_beta2", "adam_epsilon", "optim_args", "torch_compile", "neftune_noise_alpha",
    "logging_first_step",
)  # fmt: skip


def validate(cfg: Any, where: str) -> None:
    """The checks of these keys (config._validate calls it)."""
    for key in ("pref_beta", "pref_ftx", "simpo_gamma", "kto_chosen_weight", "kto_rejected_weight"):
        if getattr(cfg, key) < 0:
            raise ConfigError(f"{where}: '{key}' must not be negative, got {getattr(cfg, key)}")
    if not 0 <= cfg.dpo_label_smoothing <= 0.5:
        raise ConfigError(
            f"{where}: 'dpo_label_smoothing' must be in [0, 0.5], got {cfg.dpo_label_smoothing}"
        )
    for key in ("pissa_iter", "oft_rank", "oft_block_size"):
        if getattr(cfg, key) < (-1 if key == "pissa_iter" else 0):
            raise ConfigError(f"{where}: '{key}' must not be negative, got {getattr(cfg, key)}")
    for key in ("galore_rank", "galore_update_interval", "apollo_rank", "apollo_update_interval"):
        if getattr(cfg, key) <= 0:
            raise ConfigError(f"{where}: '{key}' must be greater than 0, got {getattr(cfg, key)}")
    if cfg.loraplus_lr_ratio is not None and cfg.loraplus_lr_ratio <= 0:
        raise ConfigError(f"{where}: 'loraplus_lr_ratio' must be greater than 0, got {cfg.loraplus_lr_ratio}")
    if cfg.neftune_noise_alpha is not None and cfg.neftune_noise_alpha < 0:
        raise ConfigError(
            f"{where}: 'neftune_noise_alpha' must not be negative, got {cfg.neftune_noise_alpha}"
        )
    if not 0 <= cfg.module_dropout < 1:
        raise ConfigError(f"{where}: 'module_dropout' is a probability below 1, got {cfg.module_dropout}")
    if cfg.finetuning_type == "oft" and (cfg.oft_rank == 0) == (cfg.oft_block_size == 0):
        raise ConfigError(f"{where}: OFT: set exactly one of 'oft_rank' and 'oft_block_size' (the other 0)")
    lora_only = [k for k in ("use_dora", "use_rslora", "pissa_init") if getattr(cfg, k)]
    if cfg.loraplus_lr_ratio is not None:
        lora_only.append("loraplus_lr_ratio")
    if lora_only and cfg.finetuning_type != "lora":
        raise ConfigError(f"{where}: {', '.join(lora_only)} need finetuning_type: lora")
    if cfg.use_dora and cfg.pissa_init:
        raise ConfigError(f"{where}: use_dora and pissa_init cannot be combined (peft supports one)")
    if cfg.rope_scaling not in (None, *ROPE_KINDS):
        raise ConfigError(
            f"{where}: 'rope_scaling' is {cfg.rope_scaling!r}; expected one of {', '.join(ROPE_KINDS)}"
        )
    if cfg.use_badam and cfg.finetuning_type != "full":
        raise ConfigError(f"{where}: use_badam trains full weights block by block: set finetuning_type: full")
    if cfg.use_badam and not 0 < cfg.badam_update_ratio <= 1:
        raise ConfigError(f"{where}: 'badam_update_ratio' must be in (0, 1], got {cfg.badam_update_ratio}")
    losses = [k for k in ("use_dft_loss", "use_eaft_loss", "use_asft_loss") if getattr(cfg, k)]
    for key in losses:
        if cfg.stage not in ("sft", "pt"):
            raise ConfigError(f"{where}: {key} is a loss of stage sft, not of stage {cfg.stage}")
    if len(losses) > 1:
        raise ConfigError(f"{where}: set only one of {', '.join(losses)}")
    if cfg.asft_alpha < 0:
        raise ConfigError(f"{where}: 'asft_alpha' must not be negative, got {cfg.asft_alpha}")
    if cfg.eaft_alpha < 0:
        raise ConfigError(f"{where}: 'eaft_alpha' must not be negative, got {cfg.eaft_alpha}")
    if cfg.use_llama_pro and cfg.finetuning_type != "freeze":
        raise ConfigError(f"{where}: use_llama_pro needs finetuning_type: freeze")
    chosen = [
        k for k in ("use_galore", "use_apollo", "use_muon", "use_badam", "use_adam_mini") if getattr(cfg, k)
    ]
    if cfg.loraplus_lr_ratio is not None:
        chosen.append("loraplus_lr_ratio")
    if len(chosen) > 1:
        raise ConfigError(f"{where}: set only one of {', '.join(chosen)} (each brings its own optimizer)")
    if (cfg.use_galore or cfg.use_apollo) and cfg.deepspeed:
        raise ConfigError(f"{where}: GaLore / APOLLO do not work with deepspeed")
    if (cfg.use_galore or cfg.use_apollo) and cfg.finetuning_type in ("lora", "oft"):
        raise ConfigError(f"{where}: GaLore / APOLLO train full weights: use finetuning_type full or freeze")
