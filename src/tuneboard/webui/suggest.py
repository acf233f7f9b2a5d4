"""The Train tab's suggested settings: the demo's recipe for builtin:tiny, per-method learning rates for a
real model. The one home of these numbers; the tab only shows them.

Interface layer helper (no gradio). builtin:tiny starts from random weights, so the defaults that suit a
pretrained model (LoRA, lr ~1e-4) teach it nothing; it gets the settings `python -m tuneboard.demo` trains
with (demo.TRAIN_YAML; a test keeps the two equal).
"""

from __future__ import annotations

from typing import Any

from ..hub import BUILTIN_PREFIX

# the demo's training settings (demo.TRAIN_YAML), which reach 100% on its triage test
TINY = {
    "finetuning_type": "full",
    "learning_rate": 5e-4,
    "num_train_epochs": 10.0,
    "per_device_train_batch_size": 8,
    "gradient_accumulation_steps": 1,
    "weight_decay": 0.1,
    "lr_scheduler_type": "cosine",
    "warmup_ratio": 0.05,
    "cutoff_len": 256,
    "logging_steps": 10,
    "save_steps": 1000,
    "seed": 42,
}
# a pretrained model: LLaMA-Factory's example settings
PRETRAINED = {
    "finetuning_type": "lora",
    "learning_rate": 2e-4,
    "num_train_epochs": 3.0,
    "per_device_train_batch_size": 2,
    "gradient_accumulation_steps": 8,
    "weight_decay": 0.0,
    "lr_scheduler_type": "cosine",
    "warmup_ratio": 0.1,
    "cutoff_len": 2048,
    "logging_steps": 5,
    "save_steps": 100,
    "seed": 42,
}
# learning rate per method on a pretrained model: adapters learn at ~1e-4..2e-4, whole weights at ~1e-5
LEARNING_RATES = {"lora": 2e-4, "oft": 2e-4, "freeze": 1e-5, "full": 1e-5}
# builtin:tiny from random weights: the demo's rate for whole weights; small adapters need more
TINY_LEARNING_RATES = {"lora": 1e-3, "oft": 1e-3, "freeze": 5e-4, "full": 5e-4}


def is_builtin(model: str | None) -> bool:
    return (model or "").strip().startswith(BUILTIN_PREFIX)


def preset(model: str | None) -> dict[str, Any]:
    """The form's settings for a newly picked model (finetuning_type included)."""
    return dict(TINY if is_builtin(model) else PRETRAINED)


def learning_rate(model: str | None, finetuning_type: str) -> float:
    """The learning rate suggested for `finetuning_type` on `model`."""
    rates = TINY_LEARNING_RATES if is_builtin(model) else LEARNING_RATES
    return rates.get(finetuning_type, rates["lora"])


def lr_text(value: float) -> str:
    """A learning rate as the form shows it (5e-4, not 0.0005)."""
    if not 0 < value < 1e-2:
        return f"{value:g}"
    mantissa, exponent = f"{value:.3e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


# the settings the tiny note names
NOTED = (
    "finetuning_type",
    "learning_rate",
    "num_train_epochs",
    "per_device_train_batch_size",
    "weight_decay",
)
NOTED += ("warmup_ratio", "cutoff_len")


def summary(settings: dict[str, Any]) -> str:
    """`key: value` of the settings that matter most, as the YAML would hold them."""

    def show(key: str, value: Any) -> str:
        if key == "learning_rate":
            return lr_text(value)
        return f"{value:g}" if isinstance(value, float) else str(value)

    return ", ".join(f"{k}: {show(k, settings[k])}" for k in NOTED if k in settings)
