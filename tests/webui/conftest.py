"""Fixtures for the web UI tests: a temporary workspace (a copy of data/), a `tuneboard webui` server on a
free localhost port, and Debian's Chromium driven by Playwright (browser tests skip when it is absent)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = REPO / "test-artifacts" / "webui"


def pytest_collection_modifyitems(config, items):
    if CHROMIUM.exists():
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = "playwright is not installed"
        else:
            return
    else:
        reason = f"{CHROMIUM} not found (apt-get install chromium)"
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_workspace(path: Path) -> Path:
    shutil.copytree(
        REPO / "data", path / "data", ignore=shutil.ignore_patterns("*.template.json", "README.md")
    )
    return path


@pytest.fixture(scope="session")
def workspace(tmp_path_factory) -> Path:
    return make_workspace(tmp_path_factory.mktemp("ws"))


def _stop_job(root: Path) -> None:
    state = root / ".tuneboard" / "job.json"
    try:
        job = json.loads(state.read_text())
        os.killpg(job["pid"], signal.SIGKILL)
    except (OSError, ValueError, KeyError):
        pass


@pytest.fixture(scope="session")
def server(workspace: Path):
    port = free_port()
    log = open(workspace.parent / "server.log", "wb")
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
    argv = [sys.executable, "-m", "tuneboard", "webui", "--root", str(workspace), "--port", str(port)]
    proc = subprocess.Popen(argv, cwd=workspace, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 90
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            log.close()
            raise RuntimeError("webui did not start:\n" + (workspace.parent / "server.log").read_text())
        time.sleep(0.5)
    yield url
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    _stop_job(workspace)
    log.close()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="en-US")
    pg = ctx.new_page()
    pg.set_default_timeout(30_000)
    pg.goto(server)
    pg.wait_for_selector("#tab-data", state="attached")
    yield pg
    ctx.close()


@pytest.fixture(scope="session")
def shots() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
