"""Job control for the web UI: one `tuneboard train|eval|export` subprocess at a time per workspace.

Interface layer helper (no gradio). The job lives in a module-level Runner, not in a browser session, and
its pid, config and output_dir are persisted in <root>/.tuneboard/job.json, so a reloaded page (or a
restarted server) finds a job that is still running. The subprocess is started from an argument list
(never a shell) in its own session; Stop sends SIGINT, on which `tuneboard train` saves a checkpoint.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from .. import rundir
from ..errors import TuneboardError
from ..files import write_json_atomic
from .paths import STATE_DIR, Workspace

KINDS = ("train", "eval", "export")
STATE_FILE = "job.json"


class JobRunning(TuneboardError):
    def __init__(self, job: Job) -> None:
        super().__init__(f"a '{job.kind}' job is already running (pid {job.pid}); stop it or wait for it")
        self.job = job


@dataclass
class Job:
    kind: str
    pid: int
    config: str  # absolute path of the YAML it runs
    output_dir: str  # absolute path of what it writes
    log: str  # absolute path of its stdout + stderr
    started: float
    ended: float | None = None
    returncode: int | None = None  # None after `ended`: it ended while no server was watching
    stopping: bool = False


def command(kind: str, config: str | Path) -> list[str]:
    if kind not in KINDS:
        raise ValueError(f"unknown job kind {kind!r}")
    return [sys.executable, "-m", "tuneboard", kind, str(config)]


def _alive(pid: int, config: str) -> bool:
    """Is `pid` still our job? (a live process, not a zombie, whose command line names the config)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # someone else's process: the pid was reused
    proc = Path(f"/proc/{pid}")
    if not proc.exists():
        return True  # no /proc (macOS): trust the signal check
    try:
        if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
        args = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return False
    return config in args and "tuneboard" in args


def read_tail(path: str | Path, lines: int = 40, max_bytes: int = 65536) -> str:
    """The last lines of a log, with tqdm's carriage-return redraws collapsed to their final state."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    out = []
    for line in data.split("\n"):
        parts = [p for p in line.split("\r") if p.strip()]
        if parts:
            out.append(parts[-1])
    return "\n".join(out[-lines:])


def clock(seconds: float) -> str:
    """Seconds as the console bar shows time: MM:SS, or H:MM:SS from an hour on."""
    minutes, s = divmod(int(seconds), 60)
    h, m = divmod(minutes, 60)
    return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def read_progress(output_dir: str | Path) -> dict[str, Any]:
    """Training progress: step / total and time left, from the record training rewrites every step
    (rundir.read_progress), or from the last line of its log when that is ahead."""
    step, total, remaining = 0, 0, None
    rec = rundir.read_progress(output_dir)
    if rec:
        step, total = int(rec.get("step") or 0), int(rec.get("max_steps") or 0)
        if rec.get("eta") is not None:
            remaining = clock(rec["eta"])
    last = rundir.last_log(output_dir)
    if last and last.get("step", 0) >= step:
        step, total = last["step"], last.get("total_steps", total)
    return {"step": step, "total": total, "remaining": remaining}


class Runner:
    """The one job slot of a workspace. Thread-safe; every page and every tab shares it."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.state_path = self.root / STATE_DIR / STATE_FILE
        self._lock = threading.RLock()
        self._proc: subprocess.Popen | None = None
        self.job: Job | None = self._load()
        self.is_running()  # settle a job that ended while no server watched

    def _load(self) -> Job | None:
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
            job = Job(**{f.name: data[f.name] for f in fields(Job) if f.name in data})
        except (OSError, ValueError, TypeError, KeyError):
            return None
        return job if _trusted(job, self.root) else None

    def _save(self) -> None:
        if self.job is not None:
            write_json_atomic(self.state_path, asdict(self.job))

    def _settle(self, returncode: int | None) -> None:
        assert self.job is not None
        self.job.ended = time.time()
        self.job.returncode = returncode
        self._proc = None
        self._save()

    def is_running(self) -> bool:
        with self._lock:
            job = self.job
            if job is None or job.ended is not None:
                return False
            if self._proc is not None and self._proc.pid == job.pid:
                code = self._proc.poll()
                if code is None:
                    return True
                self._settle(code)
                return False
            if _alive(job.pid, job.config):
                return True
            self._settle(None)
            return False

    def start(
        self, kind: str, config: str | Path, output_dir: str | Path, env: dict[str, str | None] | None = None
    ) -> Job:
        """Run `tuneboard <kind> <config>` in the root; refused (JobRunning) while another job runs."""
        with self._lock:
            if self.is_running():
                assert self.job is not None
                raise JobRunning(self.job)
            logs = self.state_path.parent / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            log = logs / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
            child_env = dict(os.environ, PYTHONUNBUFFERED="1")
            for key, value in (env or {}).items():
                if value is None:
                    child_env.pop(key, None)
                else:
                    child_env[key] = value
            argv = command(kind, config)
            with open(log, "wb") as fh:
                fh.write(("$ tuneboard " + " ".join(argv[3:]) + "\n").encode())
                fh.flush()
                proc = subprocess.Popen(  # an argument list, never a shell
                    argv,
                    cwd=self.root,
                    stdin=subprocess.DEVNULL,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    env=child_env,
                    start_new_session=True,  # outlives the server; Ctrl-C on the server does not reach it
                )
            self._proc = proc
            self.job = Job(kind, proc.pid, str(config), str(output_dir), str(log), time.time())
            self._save()
            return self.job

    def stop(self) -> bool:
        """SIGINT to the job's process group, as Ctrl-C in a terminal would; False when nothing runs."""
        with self._lock:
            if not self.is_running():
                return False
            assert self.job is not None
            self.job.stopping = True
            self._save()
            try:
                os.killpg(self.job.pid, signal.SIGINT)
            except (ProcessLookupError, PermissionError):
                try:
                    os.kill(self.job.pid, signal.SIGINT)
                except (ProcessLookupError, PermissionError):
                    return False
            return True

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job ends (tests, shutdown); True when it did within the timeout."""
        deadline = None if timeout is None else time.time() + timeout
        while self.is_running():
            if deadline is not None and time.time() > deadline:
                return False
            time.sleep(0.2)
        return True

    def state(self) -> str:
        """'idle' | 'running' | 'stopping' | 'finished' | 'stopped' | 'failed'."""
        with self._lock:
            running = self.is_running()
            job = self.job
            if job is None:
                return "idle"
            if running:
                return "stopping" if job.stopping else "running"
            if job.stopping:
                return "stopped"
            if job.returncode is None:  # ended unwatched: judge by what it left
                return "finished" if _finished(job) else "failed"
            return "finished" if job.returncode == 0 else "failed"

    def status(self, kind: str | None = None, lines: int = 40) -> dict[str, Any]:
        """A snapshot for the UI; with `kind`, a job of another kind reads as idle."""
        with self._lock:
            state = self.state()
            job = self.job
            if job is None or (kind is not None and job.kind != kind):
                return {"state": "idle", "kind": kind, "busy": state in ("running", "stopping")}
            out: dict[str, Any] = asdict(job)
            out["state"] = state
            out["busy"] = state in ("running", "stopping")
            out["log_tail"] = read_tail(job.log, lines)
            if job.kind == "train":
                out.update(read_progress(job.output_dir))
                if state == "finished" and out["total"]:
                    out["step"] = out["total"]
            return out


def _trusted(job: Job, root: Path) -> bool:
    """A job read back from job.json is one a runner could have written: a known kind, a real pid, and its
    config, output and log inside the workspace. The file may have been uploaded: it must not make the UI
    show a file from elsewhere or Stop signal another process (os.kill(-1, ...) reaches all of the user's)."""
    ws = Workspace(root)
    paths = (job.config, job.output_dir, job.log)
    return (
        job.kind in KINDS
        and type(job.pid) is int
        and job.pid > 1
        and all(isinstance(p, str) and ws.contains(p) for p in paths)
    )


def _finished(job: Job) -> bool:
    out = Path(job.output_dir)
    if job.kind == "train":
        return rundir.is_finished(out)
    if job.kind == "eval":
        return rundir.has_predictions(out)
    return out.is_dir() and any(out.iterdir())


_RUNNERS: dict[Path, Runner] = {}
_RUNNERS_LOCK = threading.Lock()


def get_runner(root: str | Path) -> Runner:
    """The module-level runner of a workspace root (one per server process)."""
    key = Path(root).resolve()
    with _RUNNERS_LOCK:
        if key not in _RUNNERS:
            _RUNNERS[key] = Runner(key)
        return _RUNNERS[key]
