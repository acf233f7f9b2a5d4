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


def serve(args: list[str], cwd: Path, log_path: Path):
    """Start `tuneboard <args> --port P` and wait until it answers; returns (process, url)."""
    port = free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
    argv = [sys.executable, "-m", "tuneboard", *args, "--port", str(port)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return proc, url
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise RuntimeError(f"{args[0]} did not start:\n" + log_path.read_text())
        time.sleep(0.5)


def shutdown(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def launch():
    """Start a `tuneboard` server for one test: launch(args, cwd) -> url; stopped afterwards."""
    procs = []

    def start(args: list[str], cwd: Path) -> str:
        proc, url = serve(args, cwd, cwd / f"{args[0]}.log")
        procs.append(proc)
        return url

    yield start
    for proc in procs:
        shutdown(proc)


@pytest.fixture(scope="session")
def server(workspace: Path):
    proc, url = serve(["webui", "--root", str(workspace)], workspace, workspace.parent / "server.log")
    yield url
    shutdown(proc)
    _stop_job(workspace)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


def open_app(pg, url: str) -> None:
    """Load the app and wait until its page-load events have run (the Train tab shows the job status)."""
    pg.goto(url)
    pg.get_by_role("tab", name="Train").click()
    pg.wait_for_function("() => (document.querySelector('#train-status')?.innerText || '').trim().length > 0")
    pg.get_by_role("tab", name="Data").click()
    pg.wait_for_selector("#identity-fill")


@pytest.fixture
def page(browser, server):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="en-US")
    pg = ctx.new_page()
    pg.set_default_timeout(30_000)
    open_app(pg, server)
    yield pg
    ctx.close()


@pytest.fixture(scope="session")
def shots() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
