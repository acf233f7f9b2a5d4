"""The hub a download comes from: the USE_MODELSCOPE_HUB variable, or the one chosen for a context (a web UI
request), which must not leak into another thread or change the process environment."""

from __future__ import annotations

import os
import threading

import pytest

from tuneboard import hub
from tuneboard.errors import TuneboardError


def test_the_environment_variable_decides_by_default(monkeypatch):
    monkeypatch.setenv("USE_MODELSCOPE_HUB", "1")
    assert hub.use_modelscope()
    monkeypatch.setenv("USE_MODELSCOPE_HUB", "0")
    assert not hub.use_modelscope()


def test_a_chosen_hub_stays_in_its_thread(monkeypatch):
    monkeypatch.delenv("USE_MODELSCOPE_HUB", raising=False)
    inside, seen_elsewhere = threading.Event(), []

    def other_request():
        inside.wait(10)
        seen_elsewhere.append(hub.use_modelscope())

    t = threading.Thread(target=other_request)
    t.start()
    with hub.using(True):
        assert hub.use_modelscope()
        assert "USE_MODELSCOPE_HUB" not in os.environ
        inside.set()
        t.join(10)
    assert seen_elsewhere == [False]
    assert not hub.use_modelscope()


def test_the_download_boundary_follows_the_chosen_hub(monkeypatch):
    """With ModelScope chosen, download() goes to ModelScope (here: not installed, so its clear message)."""
    import builtins

    real_import = builtins.__import__

    def no_modelscope(name, *args, **kwargs):
        if name.startswith("modelscope"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_modelscope)
    with hub.using(True), pytest.raises(TuneboardError, match="ModelScope is not installed"):
        hub.download("org/model", local_only=True)
