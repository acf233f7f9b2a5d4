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
    from tuneboard.data import pipeline as loader

    path = tmp_path / "tokenized"
    monkeypatch.setattr(loader, "cache_dir", lambda: path)
    return path


@pytest.fixture
def lf_data_dir() -> Path:
    """A LLaMA-Factory-style data directory (dataset_info.json + Alpaca/ShareGPT/OpenAI files), read-only."""
    return FIXTURES / "lf_data"


@pytest.fixture(scope="session")
def serve_app():
    """`with serve_app(app) as url:` runs an ASGI app with uvicorn on a free 127.0.0.1 port, in a thread of
    this process, until the block ends (url: http://127.0.0.1:PORT)."""
    import contextlib
    import socket
    import threading
    import time

    @contextlib.contextmanager
    def serve(app):
        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        end = time.time() + 60
        while not server.started:
            assert time.time() < end and thread.is_alive(), "the server did not start"
            time.sleep(0.05)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            thread.join(30)

    return serve
