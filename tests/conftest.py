"""Shared fixtures. Data-layer fixtures: the builtin tiny model directory and its tokenizer (built once per
machine into the user's cache, ~10 s the first time), and an isolated tokenization cache per test."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def tiny_dir() -> Path:
    """The builtin tiny model directory (Qwen2 architecture, ChatML tokens <|im_start|>/<|im_end|>)."""
    from tuneboard.model import tiny

    return tiny.ensure()


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_dir)


@pytest.fixture
def token_cache(tmp_path, monkeypatch) -> Path:
    """A private tokenization cache for one test (only loader.cache_dir is patched: the tiny model stays cached)."""
    from tuneboard.data import loader

    path = tmp_path / "tokenized"
    monkeypatch.setattr(loader, "cache_dir", lambda: path)
    return path


@pytest.fixture
def lf_data_dir() -> Path:
    """A LLaMA-Factory-style data directory (dataset_info.json + Alpaca/ShareGPT/OpenAI files), read-only."""
    return FIXTURES / "lf_data"
