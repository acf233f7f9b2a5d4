"""Fixtures for end-to-end tests: real CLI runs on builtin:tiny and the bundled data, shared per session."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tuneboard.cli.main import main as tuneboard
from tuneboard.model.tiny import bundled_data_dir

NAME, AUTHOR = "测试助手Zeta", "TestLab"


def write_yaml(path: Path, **keys) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(keys, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def workspace(tmp_path_factory) -> Path:
    """A copy of the bundled data directory with the identity filled in."""
    root = tmp_path_factory.mktemp("ws")
    shutil.copytree(bundled_data_dir(), root / "data", ignore=shutil.ignore_patterns("*.template.json"))
    assert (
        tuneboard(
            [
                "data",
                "identity",
                "--name",
                NAME,
                "--author",
                AUTHOR,
                "--file",
                str(root / "data/identity.json"),
            ]
        )
        == 0
    )
    return root


def train(workspace: Path, name: str, **keys) -> Path:
    out = workspace / "saves" / name
    base = dict(
        model_name_or_path="builtin:tiny",
        dataset="identity",
        dataset_dir=str(workspace / "data"),
        cutoff_len=128,
        output_dir=str(out),
        per_device_train_batch_size=16,
        logging_steps=5,
        save_steps=1000,
        seed=1,
    )
    base.update(keys)
    assert tuneboard(["train", str(write_yaml(workspace / f"{name}.yaml", **base))]) == 0
    return out


@pytest.fixture(scope="session")
def identity_full(workspace) -> Path:
    """Full fine-tuning of builtin:tiny on the identity data: greedy answers name the assistant."""
    return train(
        workspace,
        "identity-full",
        finetuning_type="full",
        learning_rate=2e-3,
        num_train_epochs=25,
        lr_scheduler_type="cosine",
        plot_loss=True,
    )


@pytest.fixture(scope="session")
def small_lora(workspace) -> Path:
    """A short LoRA run (its weights differ clearly from zero) for merge and adapter-loading tests."""
    return train(
        workspace,
        "small-lora",
        finetuning_type="lora",
        lora_rank=8,
        learning_rate=5e-3,
        max_steps=10,
        plot_loss=True,
    )


def read_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "trainer_log.jsonl").read_text().splitlines() if line.strip()]
