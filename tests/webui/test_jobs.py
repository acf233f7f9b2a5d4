"""What the UI's actions write: train / eval / export YAML (validated, confined, relative), and the
workspace look-ups behind the top bar (outputs under saves/, template guesses, dataset counts)."""

from __future__ import annotations

import json

import pytest
import yaml

from tuneboard.config import load
from tuneboard.errors import ConfigError, TuneboardError
from tuneboard.webui import jobs, lookup
from tuneboard.webui.paths import OutsideRoot, Workspace

FORM = dict(
    datasets=["identity", "triage_train"], learning_rate="1e-3", num_train_epochs=3, max_steps=20,
    max_samples=40, cutoff_len=128, per_device_train_batch_size=4, gradient_accumulation_steps=1,
    lr_scheduler_type="cosine", warmup_ratio=0, compute_type="fp32", lora_rank=8, lora_alpha=16,
    lora_dropout=0, lora_target="all", freeze_trainable_layers=2, logging_steps=2, save_steps=100,
    val_size=0, seed=42, packing=False, train_on_prompt=False, dataset_dir="data", resume=False,
)  # fmt: skip


@pytest.fixture
def ws(tmp_path):
    root = tmp_path / "root"
    (root / "data").mkdir(parents=True)
    (root / "data" / "a.json").write_text(json.dumps([{"instruction": "q", "output": "a"}] * 3))
    (root / "data" / "dataset_info.json").write_text(
        json.dumps({"a": {"file_name": "a.json"}, "hub": {"hf_hub_url": "org/set"}})
    )
    return Workspace(root)


def model(ws, output=None, ft="lora", template="chatml"):
    return lookup.model_settings(ws, "builtin:tiny", ft, output, template, False)


def test_train_config_is_valid_yaml_the_cli_loads(ws):
    out = lookup.saves_dir(ws, "builtin:tiny", "lora") / "run1"
    data = jobs.train_config(ws, model(ws), FORM, str(out), "warmup_steps: 3")
    path = jobs.write(ws, "configs/run1.yaml", data)
    text = path.read_text()
    assert text.startswith("### model\nmodel_name_or_path: builtin:tiny\n")
    assert "output_dir: saves/builtin-tiny/lora/run1" in text
    assert "trust_remote_code" not in text
    cfg, _ = load(path)
    assert cfg.dataset == "identity,triage_train" and cfg.max_steps == 20 and cfg.warmup_steps == 3
    assert cfg.learning_rate == 1e-3 and cfg.finetuning_type == "lora" and cfg.template == "chatml"
    assert yaml.safe_load(text)["dataset_dir"] == "data"


def test_bad_values_are_refused_with_the_config_message(ws):
    out = str(ws.root / "saves" / "x")
    with pytest.raises(ConfigError, match="did you mean 'warmup_steps'"):
        jobs.validate(jobs.train_config(ws, model(ws), FORM, out, "warmup_step: 3"))
    with pytest.raises(ConfigError, match="at least one dataset"):
        jobs.train_config(ws, model(ws), {**FORM, "datasets": []}, out)
    with pytest.raises(ConfigError, match="invalid YAML"):
        jobs.parse_extra("a: [")
    with pytest.raises(ConfigError, match=".yaml"):
        jobs.write(ws, "configs/x.txt", jobs.train_config(ws, model(ws), FORM, out))


def test_paths_outside_the_workspace_are_refused(ws):
    with pytest.raises(OutsideRoot):
        jobs.train_config(ws, model(ws), FORM, "/tmp/elsewhere")
    with pytest.raises(OutsideRoot):
        jobs.write(ws, "../x.yaml", {"model_name_or_path": "builtin:tiny"})
    with pytest.raises(OutsideRoot):
        jobs.export_config(ws, model(ws), {"export_dir": "../exports", "export_size": 5})
    with pytest.raises(OutsideRoot):
        lookup.model_settings(ws, "/opt/models/m", "lora", None, "auto", False)


def test_compute_type_resume_and_trust(ws):
    data = jobs.train_config(
        ws,
        lookup.model_settings(ws, "builtin:tiny", "full", None, "auto", True),
        {**FORM, "compute_type": "bf16", "resume": True},
        "saves/r",
    )
    assert (
        data["bf16"] is True and data["resume_from_checkpoint"] is True and data["trust_remote_code"] is True
    )
    assert "template" not in data and "lora_rank" not in data


def test_eval_and_export_configs(ws):
    form = dict(
        datasets=["a"],
        dataset_dir="data",
        cutoff_len=512,
        max_samples=10,
        per_device_eval_batch_size=4,
        max_new_tokens=8,
    )
    data = jobs.eval_config(ws, model(ws), form, str(ws.root / "saves" / "ev"))
    cfg = jobs.validate(data)
    assert (
        cfg.eval_dataset == "a" and cfg.do_train is False and cfg.do_predict and cfg.output_dir == "saves/ev"
    )
    assert "do_sample" not in data  # greedy unless asked
    exp = jobs.export_config(
        ws, model(ws), {"export_dir": "exports/m", "export_size": 2, "export_format": "gguf"}
    )
    cfg = jobs.validate(exp)
    assert cfg.export_dir == "exports/m" and cfg.export_format == "gguf" and not cfg.overwrite_export_dir
    assert (
        jobs.command_line("export", "configs/e.yaml", True)
        == "USE_MODELSCOPE_HUB=1 tuneboard export configs/e.yaml"
    )
    assert jobs.hub_env(False) == {"USE_MODELSCOPE_HUB": None}


def test_outputs_of_a_model_and_how_they_are_used(ws):
    base = ws.root / "saves" / "builtin-tiny" / "lora"
    (base / "lora_run" / "checkpoint-5").mkdir(parents=True)
    (base / "lora_run" / "adapter_config.json").write_text("{}")
    (base / "lora_run" / "checkpoint-5" / "trainer_state.json").write_text("{}")
    (base / "stopped" / "checkpoint-10").mkdir(parents=True)
    (base / "stopped" / "checkpoint-10" / "trainer_state.json").write_text("{}")
    (base / "eval_x").mkdir()
    (base / "eval_x" / "predict_results.json").write_text("{}")
    assert set(lookup.list_outputs(ws, "builtin:tiny", "lora")) == {
        "lora_run",
        "lora_run/checkpoint-5",
        "stopped/checkpoint-10",
    }
    assert lookup.list_outputs(ws, "builtin:tiny", "full") == []
    lora = lookup.model_settings(ws, "builtin:tiny", "lora", "lora_run", "auto", False)
    assert lora["model_name_or_path"] == "builtin:tiny"
    assert lora["adapter_name_or_path"] == "saves/builtin-tiny/lora/lora_run"
    full_dir = ws.root / "saves" / "builtin-tiny" / "full" / "r"
    full_dir.mkdir(parents=True)
    (full_dir / "config.json").write_text("{}")
    full = lookup.model_settings(ws, "builtin:tiny", "full", "r", "auto", False)
    assert full["model_name_or_path"] == "saves/builtin-tiny/full/r" and "adapter_name_or_path" not in full
    with pytest.raises(TuneboardError, match="not found"):
        lookup.model_settings(ws, "builtin:tiny", "lora", "nope", "auto", False)
    with pytest.raises(OutsideRoot):
        lookup.model_settings(ws, "builtin:tiny", "lora", "../../../../etc", "auto", False)


def test_model_names_slugs_and_templates(ws):
    assert lookup.slug("builtin:tiny") == "builtin-tiny"
    assert lookup.slug("Qwen/Qwen2.5-7B-Instruct") == "Qwen-Qwen2.5-7B-Instruct"
    assert lookup.slug("models/my model/") == "models-my-model"
    assert lookup.slug("/abs/models/m/") == "m"
    assert lookup.model_ref(ws, "Qwen/Qwen2.5-7B-Instruct") == "Qwen/Qwen2.5-7B-Instruct"
    assert lookup.guess_template(ws, "builtin:tiny") == "chatml"
    assert lookup.guess_template(ws, "Qwen/Qwen3-8B") == "auto"  # not downloaded: the CLI decides
    assert lookup.guess_template(ws, "someone/unknown") == "auto"
    local = ws.root / "models" / "mine"
    local.mkdir(parents=True)
    (local / "config.json").write_text("{}")
    (local / "tuneboard_config.yaml").write_text("template: llama3\n")
    assert lookup.local_models(ws) == ["models/mine"]
    assert lookup.model_ref(ws, "models/mine") == "models/mine"
    assert lookup.guess_template(ws, "models/mine") == "llama3"
    with pytest.raises(TuneboardError, match="not found"):
        lookup.model_ref(ws, "./missing")


def test_registered_datasets_with_counts(ws):
    rows = {r["name"]: r for r in lookup.datasets(ws, "data")}
    assert rows["a"]["records"] == 3 and rows["a"]["source"] == "a.json"
    assert rows["hub"]["records"] is None and rows["hub"]["source"] == "org/set"
    with pytest.raises(OutsideRoot):
        lookup.datasets(ws, "../..")


def outside_things(ws):
    """A data file, a model directory and an adapter outside the workspace, and a link that leads to them."""
    out = ws.root.parent / "outside"
    (out / "model").mkdir(parents=True, exist_ok=True)
    (out / "model" / "config.json").write_text("{}")
    (out / "adapter").mkdir(exist_ok=True)
    (out / "adapter" / "adapter_config.json").write_text("{}")
    (out / "outside.json").write_text(json.dumps([{"instruction": "q", "output": "a"}]))
    link = ws.root / "data" / "link"
    if not link.exists():
        link.symlink_to(out)
    return out


@pytest.mark.parametrize(
    "extra",
    [
        "output_dir: {out}/run",
        "output_dir: ../elsewhere",
        "dataset: {out}/outside.json",
        "dataset: a,{out}/outside.json",
        "eval_dataset: link/outside.json",
        "dataset: ../outside/outside.json",
        "dataset_dir: {out}",
        "dataset_dir: data/link",
        "adapter_name_or_path: {out}/adapter",
        "adapter_name_or_path: saves/a,data/link/adapter",
        "model_name_or_path: {out}/model",
        "model_name_or_path: ../outside/model",
        "model_name_or_path: data/link/model",
        "model_name_or_path: ~/model",
        "export_dir: {out}/export",
        "deepspeed: {out}/ds_z3.json",
        "resume_from_checkpoint: {out}/checkpoint-5",
        "cache_dir: {out}/hf-cache",
        "cache_dir: ~/.cache/elsewhere",
    ],
)
def test_extra_settings_cannot_lead_a_job_out_of_the_workspace(ws, extra):
    """The extra-settings box is applied after the confined form fields: every path in it is confined too,
    whichever key it comes under, and the YAML is never written."""
    out = outside_things(ws)
    text = extra.format(out=out)
    with pytest.raises(OutsideRoot, match=f"^{extra.split(':')[0]} "):
        jobs.train_config(ws, model(ws), FORM, "saves/r", text)
    data = {**jobs.train_config(ws, model(ws), FORM, "saves/r"), **jobs.parse_extra(text)}
    with pytest.raises(OutsideRoot):
        jobs.write(ws, "configs/x.yaml", data)
    assert not (ws.root / "configs" / "x.yaml").exists()


@pytest.mark.parametrize(
    "extra",
    [
        "resume_from_checkpoint: true",
        "model_name_or_path: Qwen/Qwen2.5-0.5B-Instruct",
        "model_name_or_path: builtin:tiny",
        "dataset: data/a.json",
        "dataset: a.json",
        "default_system: /no_think",
        "cache_dir: .cache/hf",
        "deepspeed: configs/ds_z3.json",
        "adapter_name_or_path: saves/a,saves/b",
    ],
)
def test_extra_settings_inside_the_workspace_are_kept(ws, extra):
    data = jobs.train_config(ws, model(ws), FORM, "saves/r", extra)
    key, value = next(iter(jobs.parse_extra(extra).items()))
    assert data[key] == value
    jobs.write(ws, "configs/ok.yaml", data)


def test_every_path_setting_is_confined():
    """A new config key that holds text is confined as a path unless it is declared as plain text here."""
    assert jobs.confined_keys() == {
        "adapter_name_or_path", "cache_dir", "dataset", "dataset_dir", "deepspeed", "eval_dataset",
        "export_dir", "model_name_or_path", "output_dir", "resume_from_checkpoint", "tokenized_path",
    }  # fmt: skip


def test_a_cached_hub_model_gets_the_template_the_cli_would_pick(ws, tmp_path, monkeypatch):
    """The web UI and the CLI use one resolver: for a hub id in the local cache, on the same files."""
    from tuneboard.data.templates.resolve import template_name

    cache = tmp_path / "hf"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    for repo, tokenizer_config in [
        ("Qwen--Qwen3-8B", {"chat_template": "{{ messages }}"}),  # has its own template: auto
        ("THUDM--glm-4-9b-chat", {}),  # none: the name hint
    ]:
        (cache / f"models--{repo}" / "refs").mkdir(parents=True)
        (cache / f"models--{repo}" / "refs" / "main").write_text("abc123")
        snap = cache / f"models--{repo}" / "snapshots" / "abc123"
        snap.mkdir(parents=True)
        (snap / "config.json").write_text("{}")
        (snap / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    for model, expected in [("Qwen/Qwen3-8B", "auto"), ("THUDM/glm-4-9b-chat", "glm4")]:
        snap = lookup.cached_hub_dir(model)
        assert snap is not None and snap.name == "abc123"
        assert lookup.guess_template(ws, model) == template_name(None, snap) == expected
