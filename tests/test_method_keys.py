"""LLaMA-Factory's method keys (method_keys.py): accepted with their types, checked, or refused in one line."""

import json

import pytest

from tuneboard import config
from tuneboard.config import from_dict
from tuneboard.errors import ConfigError


def test_lf_method_keys_are_accepted_with_their_types():
    cfg, notes = from_dict(
        {
            "use_dora": True,
            "use_rslora": "true",
            "loraplus_lr_ratio": 16,
            "neftune_noise_alpha": "5",
            "adam_beta2": 0.95,
            "lr_scheduler_kwargs": {"min_lr": 1e-6},
            "torch_compile": False,
            "freeze_extra_modules": "embed_tokens,norm",
        }
    )
    assert (cfg.use_dora, cfg.use_rslora, cfg.loraplus_lr_ratio, cfg.neftune_noise_alpha) == (
        True,
        True,
        16.0,
        5.0,
    )
    assert cfg.adam_beta2 == 0.95 and json.loads(cfg.lr_scheduler_kwargs) == {"min_lr": 1e-6}
    assert notes == []
    assert from_dict({"lr_scheduler_kwargs": '{"power": 2}'})[0].lr_scheduler_kwargs == '{"power": 2}'
    for key in ("use_dora", "pissa_init", "loraplus_lr_ratio", "oft_block_size", "neftune_noise_alpha"):
        assert config.key_help(key), key


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"use_dora": True, "finetuning_type": "full"}, "use_dora need finetuning_type: lora"),
        ({"use_dora": True, "pissa_init": True}, "use_dora and pissa_init cannot be combined"),
        ({"finetuning_type": "oft", "oft_rank": 4}, "set exactly one of 'oft_rank' and 'oft_block_size'"),
        ({"loraplus_lr_ratio": 0}, "'loraplus_lr_ratio' must be greater than 0"),
        ({"use_llama_pro": True}, "use_llama_pro needs finetuning_type: freeze"),
        ({"use_muon": True, "loraplus_lr_ratio": 16}, "set only one of use_muon, loraplus_lr_ratio"),
        ({"use_badam": True}, "use_badam trains full weights block by block"),
        ({"use_dft_loss": True, "use_asft_loss": True}, "set only one of use_dft_loss, use_asft_loss"),
        (
            {"use_asft_loss": True, "stage": "dpo", "dataset": "dpo_zh_demo"},
            "use_asft_loss is a loss of stage sft",
        ),
        ({"lr_scheduler_kwargs": "[1, 2]"}, "'lr_scheduler_kwargs' must be a mapping"),
        ({"galore_proj_type": "diagonal"}, "'galore_proj_type' is 'diagonal'; expected one of"),
    ],
)
def test_bad_method_values_say_what_is_wrong(data, message):
    with pytest.raises(ConfigError) as err:
        from_dict(data, "cfg.yaml")
    assert message in str(err.value) and str(err.value).startswith("cfg.yaml: ")


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("mixture_of_depths", "convert", "mixture-of-depths"),
        ("ray_num_workers", 4, "Ray"),
        ("quantization_method", "hqq", "GPU packages"),
        ("fp8", True, "FP8 GPU"),
    ],
)
def test_keys_that_cannot_run_are_refused_in_one_line(key, value, reason):
    with pytest.raises(ConfigError) as err:
        from_dict({key: value}, "cfg.yaml")
    text = str(err.value)
    assert "\n" not in text and text.startswith(f"cfg.yaml: '{key}': ") and reason in text


def test_refused_keys_left_off_and_their_companions_are_noted_not_fatal():
    cfg, notes = from_dict({"fp8": False, "fp8_backend": "te", "quantization_method": "bnb"}, "c.yaml")
    assert notes == [
        "c.yaml: 'fp8' is ignored (off)",
        "c.yaml: 'fp8_backend' is ignored (fp8 is not supported)",
        "c.yaml: 'quantization_method' is ignored (the default)",
    ]


def test_lf_precision_and_fp8_keys():
    cfg, _ = from_dict({"pure_bf16": True})
    assert cfg.bf16 is True
    with pytest.raises(ConfigError, match="'fp8'.*transformer-engine or torchao"):
        from_dict({"fp8": True})
    _, notes = from_dict({"fp8": False, "fp8_backend": "te"})
    assert any("'fp8_backend' is ignored" in n for n in notes)


def test_double_quantization_and_quantization_type_reach_bitsandbytes(monkeypatch):
    import torch

    pytest.importorskip("bitsandbytes")
    from tuneboard.model.load import quantization_config

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    plain = quantization_config(from_dict({"quantization_bit": 4})[0])
    assert (plain.bnb_4bit_quant_type, plain.bnb_4bit_use_double_quant) == ("nf4", True)
    cfg, _ = from_dict({"quantization_bit": 4, "double_quantization": False, "quantization_type": "fp4"})
    chosen = quantization_config(cfg)
    assert (chosen.bnb_4bit_quant_type, chosen.bnb_4bit_use_double_quant) == ("fp4", False)


@pytest.mark.parametrize(("key", "package"), [("use_badam", "badam"), ("use_adam_mini", "adam-mini")])
def test_block_optimizers_without_their_package_name_it(monkeypatch, key, package):
    import importlib.util

    from tuneboard.train.optimizer import check_packages

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda m, *a: None if m in ("badam", "adam_mini") else real(m, *a)
    )
    cfg, _ = from_dict({key: True, "finetuning_type": "full"}, "cfg.yaml")
    with pytest.raises(
        ConfigError, match=rf"'{key}' needs the .* package: pip install 'tuneboard\[{package}\]'"
    ):
        check_packages(cfg)
