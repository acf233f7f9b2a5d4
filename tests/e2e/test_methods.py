"""LLaMA-Factory's training methods end to end on builtin:tiny: each one trains (loss falls), changes only the
parameters it should, and its merged export gives the adapter model's logits (within 1e-4)."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from tuneboard.cli.main import main as tuneboard

from .conftest import read_log, train, write_yaml

pytestmark = pytest.mark.slow

SHORT = dict(
    max_steps=12, logging_steps=1, learning_rate=1e-2, lora_rank=4, save_strategy="no", overwrite_cache=True
)


def losses(run) -> list[float]:
    return [r["loss"] for r in read_log(run) if "loss" in r]


def assert_loss_falls(run) -> None:
    seen = losses(run)
    assert len(seen) >= 10 and sum(seen[-3:]) / 3 < sum(seen[:3]) / 3 - 0.3, seen  # in nats


def export_and_compare(workspace, run, name: str) -> None:
    """Export merged; its logits equal base + adapter (unmerged, through peft) on random ids."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tuneboard.model import tiny

    export_dir = workspace / f"export-{name}"
    cfg = write_yaml(
        workspace / f"export-{name}.yaml", model_name_or_path=str(run), export_dir=str(export_dir)
    )
    assert tuneboard(["export", str(cfg)]) == 0
    base = AutoModelForCausalLM.from_pretrained(tiny.ensure(), dtype=torch.float32)
    plain = AutoModelForCausalLM.from_pretrained(tiny.ensure(), dtype=torch.float32).eval()
    with_adapter = PeftModel.from_pretrained(base, str(run)).eval()
    merged = AutoModelForCausalLM.from_pretrained(export_dir, dtype=torch.float32).eval()
    ids = torch.randint(0, 2000, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = with_adapter(input_ids=ids).logits
        assert (want - plain(input_ids=ids).logits).abs().max().item() > 1e-2  # the adapter does something
        assert (want - merged(input_ids=ids).logits).abs().max().item() < 1e-4


def adapter_tensors(run) -> dict:
    return load_file(str(run / "adapter_model.safetensors"))


@pytest.mark.parametrize(
    ("name", "keys", "expected"),
    [
        ("dora", {"use_dora": True}, {"lora_A", "lora_B", "lora_magnitude_vector"}),
        ("rslora", {"use_rslora": True}, {"lora_A", "lora_B"}),
        ("loraplus", {"loraplus_lr_ratio": 16.0, "learning_rate": 1e-3}, {"lora_A", "lora_B"}),
        ("neftune", {"neftune_noise_alpha": 5.0}, {"lora_A", "lora_B"}),
    ],
)
def test_lora_variants_train_and_merge(workspace, name, keys, expected):
    run = train(workspace, f"m-{name}", finetuning_type="lora", **{**SHORT, **keys})
    assert_loss_falls(run)
    kinds = {k.split(".")[-2] if k.endswith(".weight") else k.split(".")[-1] for k in adapter_tensors(run)}
    assert kinds == expected, kinds
    conf = json.loads((run / "adapter_config.json").read_text())
    assert conf["use_dora"] is keys.get("use_dora", False) and conf["use_rslora"] is keys.get(
        "use_rslora", False
    )
    export_and_compare(workspace, run, name)


def test_pissa_saves_a_plain_lora_of_the_original_base(workspace):
    run = train(workspace, "m-pissa", finetuning_type="lora", pissa_init=True, pissa_iter=4, **SHORT)
    assert_loss_falls(run)
    conf = json.loads((run / "adapter_config.json").read_text())
    assert conf["r"] == 2 * SHORT["lora_rank"] and conf["init_lora_weights"] is True  # peft's conversion
    assert (run / "pissa_init" / "adapter_config.json").exists()
    export_and_compare(workspace, run, "pissa")


def test_pissa_conversion_reproduces_the_trained_model(tmp_path):
    """The converted adapter on the untouched base gives the logits of the trained PiSSA model."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tuneboard.config import from_dict
    from tuneboard.model import tiny
    from tuneboard.model.adapters import prepare, save_pissa_converted, save_pissa_init

    cfg, _ = from_dict(
        {"pissa_init": True, "pissa_iter": 4, "lora_rank": 4, "lora_target": "q_proj,down_proj"}
    )
    model = prepare(AutoModelForCausalLM.from_pretrained(tiny.ensure(), dtype=torch.float32), cfg, [])
    save_pissa_init(model, tmp_path / "init")
    with torch.no_grad():  # stands for training: move every adapter weight
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    save_pissa_converted(model, tmp_path / "out", tmp_path / "init")
    ids = torch.randint(0, 2000, (2, 16), generator=torch.Generator().manual_seed(0))
    base = AutoModelForCausalLM.from_pretrained(tiny.ensure(), dtype=torch.float32)
    loaded = PeftModel.from_pretrained(base, str(tmp_path / "out")).eval()
    with torch.no_grad():
        assert (model.eval()(input_ids=ids).logits - loaded(input_ids=ids).logits).abs().max().item() < 1e-4


def test_oft_trains_only_rotations_and_merges(workspace):
    run = train(workspace, "m-oft", finetuning_type="oft", oft_block_size=16, **SHORT)
    assert_loss_falls(run)
    assert {k.split(".")[-2] for k in adapter_tensors(run)} <= {"oft_R"}
    assert json.loads((run / "adapter_config.json").read_text())["peft_type"] == "OFT"
    export_and_compare(workspace, run, "oft")


def changed_parameters(run) -> set[str]:
    import torch
    from transformers import AutoModelForCausalLM

    from tuneboard.model import tiny

    before = AutoModelForCausalLM.from_pretrained(tiny.ensure(), dtype=torch.float32).state_dict()
    after = AutoModelForCausalLM.from_pretrained(run, dtype=torch.float32).state_dict()
    return {n for n, t in before.items() if not torch.equal(t, after[n])}


def test_freeze_modules_train_only_what_is_named(workspace):
    run = train(
        workspace, "m-freeze-modules", finetuning_type="freeze", freeze_trainable_layers=1,
        freeze_trainable_modules="mlp", freeze_extra_modules="norm", **SHORT,
    )  # fmt: skip
    assert_loss_falls(run)
    changed = changed_parameters(run)
    last = json.loads((run / "config.json").read_text())["num_hidden_layers"] - 1
    assert changed == {
        n for n in changed if n.startswith(f"model.layers.{last}.mlp.") or n == "model.norm.weight"
    }
    assert "model.norm.weight" in changed and any(".mlp.down_proj" in n for n in changed)


def test_llama_pro_trains_the_last_block_of_each_group(workspace):
    run = train(workspace, "m-llama-pro", finetuning_type="freeze", use_llama_pro=True, freeze_trainable_layers=2,
                **SHORT)  # fmt: skip
    assert_loss_falls(run)
    layers = json.loads((run / "config.json").read_text())["num_hidden_layers"]
    trained = {int(n.split(".")[2]) for n in changed_parameters(run)}
    assert trained == {layers // 2 - 1, layers - 1}


@pytest.mark.parametrize(("key", "module"), [("use_galore", "galore_torch"), ("use_apollo", "apollo_torch")])
def test_low_rank_optimizers_train_full_weights(workspace, key, module):
    pytest.importorskip(module)
    name = key.removeprefix("use_")
    keys = {key: True, f"{name}_rank": 4, f"{name}_update_interval": 5, f"{name}_scale": 1.0}
    run = train(workspace, f"m-{name}", finetuning_type="full", **{**SHORT, "learning_rate": 2e-3, **keys})
    assert_loss_falls(run)
    assert any(".mlp." in n for n in changed_parameters(run))


def test_low_rank_optimizer_without_its_package_names_it(workspace, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "galore_torch" else real(n, *a)
    )
    out = workspace / "saves" / "m-no-galore"
    cfg = write_yaml(workspace / "no-galore.yaml", dataset="identity", dataset_dir=str(workspace / "data"),
                     output_dir=str(out), finetuning_type="full", use_galore=True)  # fmt: skip
    assert tuneboard(["train", str(cfg)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert "'use_galore' needs the galore_torch" in err[-1] and not out.exists()
    assert err[-1].endswith(": pip install 'tuneboard[galore]' (galore-torch, bitsandbytes)")
