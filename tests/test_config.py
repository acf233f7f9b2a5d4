"""Typed settings: YAML + key=value overrides, coercion, validation with the closest key, LLaMA-Factory keys."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tuneboard import config
from tuneboard.cli.main import main
from tuneboard.config import Config, from_dict, load, parse_overrides
from tuneboard.errors import ConfigError
from tuneboard.keys import GROUPS

FIXTURES = Path(__file__).parent / "fixtures"


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_valid():
    cfg, notes = from_dict({})
    assert notes == [] and cfg.model_name_or_path == "builtin:tiny"
    assert cfg.lora_alpha == 2 * cfg.lora_rank


def test_llamafactory_qwen3_lora_sft_yaml_loads():
    cfg, notes = load(FIXTURES / "qwen3_lora_sft.yaml")
    assert notes == []
    assert cfg.model_name_or_path == "Qwen/Qwen3-4B-Instruct-2507" and cfg.trust_remote_code is True
    assert (cfg.stage, cfg.do_train, cfg.finetuning_type, cfg.lora_rank, cfg.lora_target) == (
        "sft",
        True,
        "lora",
        8,
        "all",
    )
    assert cfg.datasets == ["identity", "alpaca_en_demo"]
    assert (cfg.template, cfg.cutoff_len, cfg.max_samples) == ("qwen3_nothink", 2048, 1000)
    assert (
        cfg.overwrite_cache is True
        and cfg.preprocessing_num_workers == 16
        and cfg.dataloader_num_workers == 4
    )
    assert cfg.output_dir == "saves/qwen3-4b/lora/sft"
    assert (cfg.per_device_train_batch_size, cfg.gradient_accumulation_steps) == (1, 8)
    assert cfg.learning_rate == pytest.approx(1e-4) and isinstance(cfg.learning_rate, float)
    assert cfg.num_train_epochs == 3.0 and cfg.lr_scheduler_type == "cosine" and cfg.warmup_ratio == 0.1
    assert cfg.bf16 is True and cfg.ddp_timeout == 180000000 and cfg.resume_from_checkpoint is None
    assert cfg.source == str(FIXTURES / "qwen3_lora_sft.yaml")
    assert cfg.explicit >= {"learning_rate", "bf16", "dataset"} and "seed" not in cfg.explicit


def test_every_key_of_the_example_is_a_known_key():
    data = yaml.safe_load((FIXTURES / "qwen3_lora_sft.yaml").read_text(encoding="utf-8"))
    assert set(data) <= set(config.known_keys())


def test_learning_rate_1e_4_is_a_string_in_pyyaml_and_still_a_number(tmp_path):
    assert yaml.safe_load("learning_rate: 1e-4") == {"learning_rate": "1e-4"}  # YAML 1.1 needs a dot
    cfg, _ = load(write(tmp_path, "learning_rate: 1e-4\nwarmup_ratio: '0.05'\n"))
    assert cfg.learning_rate == pytest.approx(1e-4) and cfg.warmup_ratio == pytest.approx(0.05)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("cutoff_len", "1024", 1024),
        ("cutoff_len", "1e3", 1000),
        ("cutoff_len", 512.0, 512),
        ("num_train_epochs", 3, 3.0),
        ("bf16", "yes", True),
        ("bf16", "False", False),
        ("do_train", 1, True),
        ("val_size", 10, 10.0),
        ("dataset", ["a", "b"], "a,b"),
        ("lora_target", ["q_proj", "v_proj"], "q_proj,v_proj"),
        ("max_samples", "null", None),
        ("template", None, None),
        ("resume_from_checkpoint", True, "true"),
        ("resume_from_checkpoint", False, None),
        ("model_name_or_path", 7, "7"),
    ],
)
def test_type_coercion(key, value, expected):
    cfg, _ = from_dict({key: value})
    assert getattr(cfg, key) == expected
    assert type(getattr(cfg, key)) is type(expected)


def test_key_aliases():
    cfg, _ = from_dict({"lora_r": 16, "evaluation_strategy": "epoch"})
    assert cfg.lora_rank == 16 and cfg.lora_alpha == 32 and cfg.eval_strategy == "epoch"


def test_ignored_llamafactory_keys_give_notes():
    cfg, notes = from_dict({"ddp_find_unused_parameters": False, "use_fast_tokenizer": True}, where="x.yaml")
    assert notes == [
        "x.yaml: 'ddp_find_unused_parameters' is ignored (handled automatically)",
        "x.yaml: 'use_fast_tokenizer' is ignored (tuneboard always uses the fast tokenizer)",
    ]


@pytest.mark.parametrize(
    ("key", "close"),
    [
        ("learning_rat", "learning_rate"),
        ("cuttoff_len", "cutoff_len"),
        ("datasets", "dataset"),
        ("lora_rnak", "lora_rank"),
    ],
)
def test_unknown_key_names_the_closest_key(tmp_path, key, close):
    path = write(tmp_path, f"{key}: 1\n")
    with pytest.raises(ConfigError) as err:
        load(path)
    assert str(err.value) == f"{path}: unknown key '{key}'; did you mean '{close}'?"


def test_unknown_key_without_a_close_one():
    with pytest.raises(ConfigError) as err:
        from_dict({"zzzz_qqqq": 1}, where="w")
    assert str(err.value) == "w: unknown key 'zzzz_qqqq'"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"cutoff_len": 0}, "'cutoff_len' must be greater than 0, got 0"),
        ({"cutoff_len": "long"}, "'cutoff_len' must be an integer, got 'long'"),
        ({"cutoff_len": 10.5}, "'cutoff_len' must be an integer, got 10.5"),
        ({"cutoff_len": True}, "'cutoff_len' must be an integer, got True"),
        ({"cutoff_len": None}, "'cutoff_len' must not be empty"),
        ({"learning_rate": "fast"}, "'learning_rate' must be a number, got 'fast'"),
        ({"learning_rate": 5}, "'learning_rate' 5.0 is absurd"),
        ({"learning_rate": -1e-4}, "'learning_rate' must not be negative"),
        ({"bf16": "maybe"}, "'bf16' must be true or false, got 'maybe'"),
        (
            {"finetuning_type": "lorra"},
            "'finetuning_type' is 'lorra'; expected one of lora, oft, freeze, full; did you mean 'lora'?",
        ),
        ({"stage": "ppo"}, "stage 'ppo' is not supported yet"),
        ({"bf16": True, "fp16": True}, "set only one of 'bf16' and 'fp16'"),
        ({"val_size": 1.5}, "'val_size' is a fraction below 1 or a whole number of records"),
        ({"warmup_ratio": 1.0}, "'warmup_ratio' must be in [0, 1)"),
        ({"top_p": 1.5}, "'top_p' must be at most 1"),
        ({"quantization_bit": 3}, "'quantization_bit' must be 4 or 8, got 3"),
        ({"max_samples": 0}, "'max_samples' must be greater than 0"),
        ({"dataset": {"a": 1}}, "'dataset' must be a string"),
    ],
)
def test_bad_values(data, message):
    with pytest.raises(ConfigError) as err:
        from_dict(data, where="cfg.yaml")
    assert str(err.value).startswith("cfg.yaml: ")
    assert message in str(err.value)


def test_overrides_parse_as_yaml_scalars():
    assert parse_overrides(
        ["learning_rate=1e-4", "bf16=true", "max_samples=null", "dataset=a,b", "--cutoff-len=512"]
    ) == {
        "learning_rate": "1e-4",
        "bf16": True,
        "max_samples": None,
        "dataset": "a,b",
        "cutoff_len": 512,
    }
    assert parse_overrides(["template="]) == {"template": None}
    assert parse_overrides(["default_system=Note: be brief"]) == {"default_system": "Note: be brief"}
    assert parse_overrides(["dataset=[a, b]"]) == {"dataset": ["a", "b"]}


def test_overrides_win_over_the_yaml(tmp_path):
    path = write(tmp_path, "learning_rate: 1.0e-4\ncutoff_len: 2048\ndataset: identity\n")
    cfg, _ = load(path, ["cutoff_len=256", "learning_rate=2e-5", "dataset=identity,triage_train"])
    assert cfg.cutoff_len == 256 and cfg.learning_rate == pytest.approx(2e-5)
    assert cfg.datasets == ["identity", "triage_train"]
    assert cfg.explicit >= {"cutoff_len", "learning_rate", "dataset"}


def test_override_text_with_a_colon():
    cfg, _ = load(None, ["default_system=Role: a gardener. Be brief."])
    assert cfg.default_system == "Role: a gardener. Be brief."


def test_overrides_alone():
    cfg, _ = load(None, ["finetuning_type=full"])
    assert cfg.finetuning_type == "full" and cfg.source == "command line"


def test_bad_override():
    with pytest.raises(ConfigError, match="command line: 'cutoff_len' is not key=value"):
        load(None, ["cutoff_len"])
    with pytest.raises(
        ConfigError, match="command line: unknown key 'learning_rte'; did you mean 'learning_rate'"
    ):
        load(None, ["learning_rte=1"])


def test_yaml_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"missing\.yaml: config file not found"):
        load(tmp_path / "missing.yaml")
    bad = write(tmp_path, "cutoff_len: 1\n  learning_rate: 2\n", "bad.yaml")
    with pytest.raises(ConfigError, match=r"bad\.yaml: invalid YAML \(line 2, column 16\)"):
        load(bad)
    listy = write(tmp_path, "- cutoff_len: 1\n", "list.yaml")
    with pytest.raises(ConfigError, match="expected a mapping of key: value at the top level, got list"):
        load(listy)
    assert load(write(tmp_path, "# only a comment\n", "empty.yaml"))[0].cutoff_len == Config().cutoff_len


def test_saved_config_loads_back_the_same(tmp_path):
    cfg, _ = load(FIXTURES / "qwen3_lora_sft.yaml", ["cutoff_len=512"])
    cfg.save(tmp_path / "saved.yaml")
    back, notes = load(tmp_path / "saved.yaml")
    assert notes == [] and back.to_dict() == cfg.to_dict()


def test_config_errors_through_the_cli(capsys, tmp_path):
    path = write(tmp_path, "learning_rat: 1e-4\n")
    code = main(["train", str(path)])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert err.strip() == f"error: {path}: unknown key 'learning_rat'; did you mean 'learning_rate'?"
    code = main(["train", str(path.with_name("nope.yaml"))])
    assert code == 1 and capsys.readouterr().err.strip().endswith("nope.yaml: config file not found")


# ---- keys declared once: help, group, choices; the --help-keys listing ----


def test_every_key_is_declared_with_a_help_text_and_a_group():
    assert list(config.KEYS) == list(Config().to_dict())  # every YAML key, none of the internal fields
    for name, f in config.KEYS.items():
        assert f.metadata["help"].strip() and "\n" not in f.metadata["help"], name
        assert f.metadata["group"] in GROUPS, name
        if f.metadata["choices"]:
            assert f.type == "str" and f.default in f.metadata["choices"], name
    assert config.CHOICES["finetuning_type"] == ("lora", "oft", "freeze", "full")


@pytest.mark.parametrize("command", ["train", "eval", "chat", "export", "api", "webchat"])
def test_help_keys_lists_every_key_by_group(capsys, command):
    with pytest.raises(SystemExit) as done:
        main([command, "--help-keys"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "  save_strategy: str = steps  (one of no, steps, epoch, best)\n" in out
    assert f"      {config.key_help('save_strategy')}\n" in out
    assert all(f"\n  {key}: " in out for key in config.known_keys())
    assert [line for line in out.splitlines() if line.endswith(":")] == [f"{g}:" for g in GROUPS]


def test_help_keys_with_a_keyword(capsys):
    with pytest.raises(SystemExit) as done:
        main(["train", "--help-keys", "LoRA"])
    out = capsys.readouterr().out
    assert done.value.code == 0 and "  lora_rank: int = 8\n" in out and "cutoff_len" not in out
    with pytest.raises(SystemExit) as done:
        main(["train", "--help-keys", "zzzz"])
    assert done.value.code == 1 and capsys.readouterr().err == "no config key matches 'zzzz'\n"


def test_a_value_outside_the_choices_is_refused_with_the_choices():
    with pytest.raises(ConfigError) as err:
        from_dict({"save_strategy": "sometimes"}, where="w")
    assert str(err.value) == "w: 'save_strategy' is 'sometimes'; expected one of no, steps, epoch, best"


def test_a_number_too_large_for_an_integer_names_the_key():
    with pytest.raises(ConfigError) as err:
        load(None, ["cutoff_len=1e400"])
    assert str(err.value) == "command line: 'cutoff_len' must be an integer, got '1e400'"


def test_no_and_yes_stay_words_for_a_key_with_choices(tmp_path):
    cfg, _ = load(None, ["save_strategy=no", "eval_strategy=no", "bf16=no", "do_train=yes"])
    assert (cfg.save_strategy, cfg.eval_strategy, cfg.bf16, cfg.do_train) == ("no", "no", False, True)
    path = write(tmp_path, "save_strategy: no\nbf16: off\ndo_eval: on\nresume_from_checkpoint: yes\n")
    cfg, _ = load(path)
    assert (cfg.save_strategy, cfg.bf16, cfg.do_eval, cfg.resume_from_checkpoint) == (
        "no",
        False,
        True,
        "true",
    )
    assert from_dict({"save_strategy": False})[0].save_strategy == "no"  # a mapping read by yaml.safe_load
    with pytest.raises(ConfigError, match="'flash_attn' is 'off'; expected one of auto, disabled"):
        load(None, ["flash_attn=off"])


def test_do_predict_without_do_train_only_predicts_as_in_llamafactory():
    cfg, _ = from_dict({"do_predict": True, "eval_dataset": "identity"})
    assert cfg.do_train is False and "do_train" not in cfg.explicit
    cfg, _ = from_dict({"do_predict": True, "do_train": True, "dataset": "identity"})
    assert cfg.do_train is True
    assert from_dict({})[0].do_train is True


def test_nproc_per_node_is_checked_with_the_config_not_at_launch():
    with pytest.raises(ConfigError, match="'nproc_per_node' must be at least 1, got 0"):
        load(None, ["nproc_per_node=0"])
