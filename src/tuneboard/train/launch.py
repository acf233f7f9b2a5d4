"""Several training processes: `tuneboard train` re-runs itself under torchrun when more than one GPU is
visible, `nproc_per_node` > 1 is set, NNODES > 1 (with NODE_RANK, MASTER_ADDR, MASTER_PORT), or `deepspeed:` is
set (even for one process).

Interface layer (cli.py calls it); no training logic. Under torchrun / accelerate launch it does nothing.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from typing import Any

from ..config import Config
from ..errors import ConfigError

LAUNCHER_ENV = ("LOCAL_RANK", "WORLD_SIZE")  # set by torchrun, accelerate launch and deepspeed


def under_launcher() -> bool:
    return any(key in os.environ for key in LAUNCHER_ENV)


def visible_gpus() -> int:
    """CUDA (or ROCm) devices torch can use; torch is imported only when its build has GPU support."""
    from ..hardware.report import torch_build

    build = torch_build()
    if not (build.get("cuda") or build.get("hip")):
        return 0
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _env_int(key: str, default: int, minimum: int = 0) -> int:
    raw = os.environ.get(key, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {key}={raw!r}: expected an integer") from None
    if value < minimum:
        raise ConfigError(f"environment variable {key}={value}: must be at least {minimum}")
    return value


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_argv(
    cfg: Config, config_path: str | None, overrides: list[str], debug: bool = False, gpus: int | None = None
) -> list[str] | None:
    """The torchrun command that runs this training on several processes (or on one, with DeepSpeed), or None
    for one plain process."""
    if under_launcher():
        return None
    nnodes = _env_int("NNODES", 1, minimum=1)
    nproc = cfg.nproc_per_node or max(visible_gpus() if gpus is None else gpus, 1)
    # DeepSpeed started without a launcher looks for its rank through MPI (and fails without mpi4py); under
    # torchrun it reads RANK, WORLD_SIZE, MASTER_ADDR, ... instead, so a DeepSpeed run always has a launcher
    if nproc == 1 and nnodes == 1 and not cfg.deepspeed:
        return None
    node_rank = _env_int("NODE_RANK", 0)
    if node_rank >= nnodes:
        raise ConfigError(f"NODE_RANK={node_rank} with NNODES={nnodes}: NODE_RANK must be below NNODES")
    addr = os.environ.get("MASTER_ADDR", "").strip()
    if nnodes > 1 and not addr:
        raise ConfigError(
            f"NNODES={nnodes}: set MASTER_ADDR to the address of the node with NODE_RANK=0 "
            "(and the same MASTER_PORT on every node)"
        )
    port = _env_int("MASTER_PORT", 29500 if nnodes > 1 else free_port(), minimum=1)
    argv = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={nproc}",
        f"--nnodes={nnodes}",
        f"--node_rank={node_rank}",
        f"--master_addr={addr or '127.0.0.1'}",
        f"--master_port={port}",
        "-m",
        "tuneboard",
        *(["--debug"] if debug else []),
        "train",
        *([config_path] if config_path else []),
        *overrides,
    ]
    return argv


def _forward_interrupt(proc: subprocess.Popen) -> Any:
    """Ctrl-C / SIGTERM reach the training processes (torchrun's children) as one SIGINT each, so every
    rank saves its part of a checkpoint; torchrun itself would give them only 30 seconds before killing."""

    def handle(signum, frame):
        try:
            import psutil

            workers = psutil.Process(proc.pid).children()
        except Exception:
            workers = []
        for w in workers or [proc]:
            try:
                w.send_signal(signal.SIGINT)
            except Exception:
                pass

    return handle


def run(argv: list[str]) -> int:
    """Run torchrun (in its own session, so only this process sees the terminal's Ctrl-C) and wait."""
    nproc = next(a.split("=", 1)[1] for a in argv if a.startswith("--nproc_per_node="))
    nnodes = next(a.split("=", 1)[1] for a in argv if a.startswith("--nnodes="))
    where = f" on each of {nnodes} nodes" if nnodes != "1" else ""
    what = "1 training process" if nproc == "1" else f"{nproc} training processes"
    print(f"launching {what}{where} with torchrun", file=sys.stderr, flush=True)
    proc = subprocess.Popen(argv, start_new_session=True)  # an argument list, never a shell
    handler = _forward_interrupt(proc)
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        rc = proc.wait()
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    if rc != 0:
        print(f"error: a training process failed (torchrun exit status {rc}); see above", file=sys.stderr)
    return rc


def is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


def say(msg: str) -> None:
    if is_main_process():
        print(msg, flush=True)


def warn(msg: str) -> None:
    if is_main_process():
        print(f"warning: {msg}", file=sys.stderr, flush=True)


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def end_process_group() -> None:
    """Several processes: leave the process group cleanly (evaluation afterwards runs on rank 0 alone)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()  # every rank done with its files before the group goes away
        dist.destroy_process_group()
