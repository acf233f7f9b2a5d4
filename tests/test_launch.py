"""Several processes: when `tuneboard train` starts torchrun and with which arguments; the shipped DeepSpeed and
FSDP configs; a `deepspeed:` path that does not exist is a config error before anything starts."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from tuneboard.cli.main import main as tuneboard
from tuneboard.config import Config
from tuneboard.errors import ConfigError
from tuneboard.train import launch

ROOT = Path(__file__).resolve().parents[1]
DIST_ENV = ("LOCAL_RANK", "WORLD_SIZE", "NNODES", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for key in DIST_ENV:
        monkeypatch.delenv(key, raising=False)


def test_one_process_without_gpus_or_nproc():
    assert launch.torchrun_argv(Config(), "cfg.yaml", [], gpus=0) is None
    assert launch.torchrun_argv(Config(), "cfg.yaml", [], gpus=1) is None
    assert launch.torchrun_argv(Config(nproc_per_node=1), "cfg.yaml", [], gpus=4) is None


def test_nproc_per_node_starts_torchrun_with_the_same_command():
    argv = launch.torchrun_argv(Config(nproc_per_node=2), "cfg.yaml", ["nproc_per_node=2", "seed=3"], gpus=0)
    assert argv[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--nproc_per_node=2" in argv and "--nnodes=1" in argv and "--node_rank=0" in argv
    assert "--master_addr=127.0.0.1" in argv
    assert argv[argv.index("--nnodes=1") + 3 :][-6:] == [
        "-m",
        "tuneboard",
        "train",
        "cfg.yaml",
        "nproc_per_node=2",
        "seed=3",
    ]


def test_several_gpus_start_one_process_each():
    argv = launch.torchrun_argv(Config(), None, ["dataset=x"], debug=True, gpus=4)
    assert "--nproc_per_node=4" in argv
    assert argv[-4:] == ["tuneboard", "--debug", "train", "dataset=x"]


def test_deepspeed_always_runs_under_torchrun():
    """DeepSpeed needs the rank variables a launcher sets (without them it tries MPI), even for one process."""
    argv = launch.torchrun_argv(Config(deepspeed="ds_z3_config.json"), "cfg.yaml", ["seed=3"], gpus=0)
    assert "--nproc_per_node=1" in argv and "--nnodes=1" in argv
    assert argv[-4:] == ["tuneboard", "train", "cfg.yaml", "seed=3"]
    assert "--nproc_per_node=2" in launch.torchrun_argv(Config(deepspeed="ds.json"), None, [], gpus=2)


def test_already_under_a_launcher_does_nothing(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert launch.torchrun_argv(Config(nproc_per_node=2), "cfg.yaml", [], gpus=2) is None
    assert launch.torchrun_argv(Config(deepspeed="ds.json"), "cfg.yaml", [], gpus=0) is None


def test_multi_node_environment(monkeypatch):
    monkeypatch.setenv("NNODES", "2")
    with pytest.raises(ConfigError, match="MASTER_ADDR"):
        launch.torchrun_argv(Config(), "cfg.yaml", [], gpus=1)
    monkeypatch.setenv("MASTER_ADDR", "10.0.0.1")
    monkeypatch.setenv("NODE_RANK", "1")
    argv = launch.torchrun_argv(Config(), "cfg.yaml", [], gpus=1)  # one GPU per machine, two machines
    assert {"--nproc_per_node=1", "--nnodes=2", "--node_rank=1", "--master_addr=10.0.0.1"} <= set(argv)
    assert "--master_port=29500" in argv
    monkeypatch.setenv("MASTER_PORT", "31000")
    assert "--master_port=31000" in launch.torchrun_argv(Config(), "cfg.yaml", [], gpus=8)
    monkeypatch.setenv("NODE_RANK", "2")
    with pytest.raises(ConfigError, match="NODE_RANK"):
        launch.torchrun_argv(Config(), "cfg.yaml", [], gpus=1)
    monkeypatch.setenv("NNODES", "two")
    with pytest.raises(ConfigError, match="NNODES"):
        launch.torchrun_argv(Config(), "cfg.yaml", [], gpus=1)


@pytest.mark.parametrize(
    "path", sorted((ROOT / "examples" / "deepspeed").glob("*.json")), ids=lambda p: p.name
)
def test_deepspeed_configs_parse(path):
    ds = json.loads(path.read_text())
    zero = ds["zero_optimization"]
    assert zero["stage"] == int(path.name[4])
    assert ("offload_optimizer" in zero) == ("offload" in path.name)
    for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "gradient_clipping"):
        assert ds[key] == "auto"  # filled from the tuneboard config by transformers


def test_deepspeed_configs_shipped():
    names = {p.name for p in (ROOT / "examples" / "deepspeed").glob("*.json")}
    assert names == {f"ds_z{s}{o}_config.json" for s in (2, 3) for o in ("", "_offload")}
    fsdp = yaml.safe_load((ROOT / "examples" / "fsdp" / "fsdp_config.yaml").read_text())
    assert fsdp["distributed_type"] == "FSDP" and fsdp["fsdp_config"]["fsdp_version"] == 2
    example = yaml.safe_load((ROOT / "examples" / "qwen2.5-7b-lora-ds3.yaml").read_text())
    assert (ROOT / example["deepspeed"]).is_file()
    from tuneboard.config import from_dict

    from_dict(example)  # the example uses only known keys


def test_missing_deepspeed_file_is_a_config_error(tmp_path, capsys):
    cfg = tmp_path / "ds.yaml"
    cfg.write_text(
        "dataset: identity\nmodel_name_or_path: builtin:tiny\n"
        f"output_dir: {tmp_path / 'out'}\ndeepspeed: {tmp_path / 'nope' / 'ds_z3_config.json'}\n"
    )
    assert tuneboard(["train", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "deepspeed:" in err and "ds_z3_config.json not found" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_deepspeed_file_that_is_not_json(tmp_path, capsys):
    bad = tmp_path / "ds.json"
    bad.write_text("{stage: 3")
    cfg = tmp_path / "ds.yaml"
    cfg.write_text(f"dataset: identity\noutput_dir: {tmp_path / 'out'}\ndeepspeed: {bad}\n")
    assert tuneboard(["train", str(cfg)]) == 1
    assert "not valid JSON" in capsys.readouterr().err


def test_deepspeed_fp16_on_a_cpu_is_refused_before_anything_starts(tmp_path, capsys):
    ds = json.loads((ROOT / "examples" / "deepspeed" / "ds_z3_config.json").read_text())
    ds["fp16"]["enabled"] = True  # DeepSpeed refuses it on a CPU; "auto" follows the config's fp16/bf16
    path = tmp_path / "ds.json"
    path.write_text(json.dumps(ds))
    cfg = tmp_path / "ds.yaml"
    cfg.write_text(f"dataset: identity\noutput_dir: {tmp_path / 'out'}\ndeepspeed: {path}\nuse_cpu: true\n")
    assert tuneboard(["train", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "fp16.enabled to true, which DeepSpeed refuses on a CPU" in err and '"auto"' in err
    assert not (tmp_path / "out").exists()
