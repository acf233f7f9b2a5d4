"""Trainer callbacks: the JSON-lines log, the per-step progress record, the one progress bar, and
Ctrl-C -> checkpoint -> clean exit.

Training layer (used by train.py only).
"""

from __future__ import annotations

import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from .. import rundir
from ..errors import Interrupted


class TokenCounter:
    """Filled by the trainer's loss: tokens seen and trained since the start (this process), and every
    process's tokens as of the last logging step (summed by the trainer there)."""

    def __init__(self) -> None:
        self.tokens = 0
        self.trained = 0
        self.all_tokens = 0


class JsonlLogger(TrainerCallback):
    """One JSON line per logging step (and per evaluation) in the run's log (rundir.LOG); rank 0 only."""

    def __init__(self, output_dir: str, counter: TokenCounter) -> None:
        self.out = Path(output_dir)
        self.path = rundir.log_path(self.out)
        self.counter = counter
        self.start = time.time()
        self.last_tokens = 0
        self.last_time = self.start

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = self.last_time = time.time()
        if state.is_world_process_zero and not args.resume_from_checkpoint:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.exists() and state.global_step == 0:
                self.path.unlink()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        now = time.time()
        elapsed = now - self.start
        step, total = state.global_step, state.max_steps
        done_this_run = max(step - getattr(state, "_tb_first_step", 0), 1)
        remaining = elapsed / done_this_run * max(total - step, 0)
        rec: dict[str, Any] = {"step": step, "total_steps": total, "epoch": round(state.epoch or 0, 4)}
        if "loss" in logs:
            rec["loss"] = round(float(logs["loss"]), 6)
            rec["lr"] = logs.get("learning_rate")
            if logs.get("grad_norm") is not None:
                rec["grad_norm"] = round(float(logs["grad_norm"]), 6)
            dt = max(now - self.last_time, 1e-9)
            rec["tokens"] = self.counter.all_tokens  # since this run started, all processes
            rec["tokens_per_second"] = round((self.counter.all_tokens - self.last_tokens) / dt, 2)
            self.last_tokens, self.last_time = self.counter.all_tokens, now
        if "eval_loss" in logs:
            rec["eval_loss"] = round(float(logs["eval_loss"]), 6)
            rec["eval_perplexity"] = round(math.exp(min(float(logs["eval_loss"]), 50)), 4)
        # a stage's own metrics (BaseTrainer.record: rewards/chosen, logps/rejected, eval_rewards/accuracies, kl, ...)
        ours = {k: v for k, v in logs.items() if "/" in k or k in ("kl", "eval_kl")}
        rec.update({k: round(float(v), 6) for k, v in ours.items() if isinstance(v, (int, float))})
        if len(rec) == 3:
            return
        rec["elapsed"] = round(elapsed, 2)
        rec["remaining"] = round(remaining, 2)
        rundir.append_log(self.out, rec)


class ProgressWriter(TrainerCallback):
    """The machine-readable twin of the progress bar: after every step, rank 0 overwrites the run's progress
    record (rundir.write_progress) with step, max_steps, epoch, the last logged loss, elapsed and eta seconds.
    The web UI's progress bar reads it (rundir.read_progress) instead of the console."""

    def __init__(self, output_dir: str) -> None:
        self.out = Path(output_dir)
        self.start = time.time()
        self.first_step = 0
        self.last: dict[str, Any] = {}

    def on_train_begin(self, args, state, control, **kwargs):
        self.start, self.first_step, self.last = time.time(), state.global_step, {}
        self.write(state)

    def on_step_end(self, args, state, control, **kwargs):
        self.write(state)

    def on_log(self, args, state, control, logs=None, **kwargs):
        """A logging step comes after its on_step_end: its loss is written at once, not one step late."""
        logs = logs or {}
        found = {k: round(float(logs[k]), 6) for k in ("loss", "eval_loss") if logs.get(k) is not None}
        if found:  # rounded as in the log
            if logs.get("learning_rate") is not None:
                found["learning_rate"] = float(logs["learning_rate"])
            self.last.update(found)
            self.write(state)

    def write(self, state: Any) -> None:
        if not state.is_world_process_zero:
            return
        now = time.time()
        step, total = state.global_step, state.max_steps
        elapsed = now - self.start
        done_this_run = step - self.first_step
        eta = elapsed / done_this_run * max(total - step, 0) if done_this_run > 0 else None
        record: dict[str, Any] = {
            "step": step,
            "max_steps": total,
            "epoch": round(state.epoch or 0, 4),
            **self.last,
            "elapsed": round(elapsed, 2),
            "eta": None if eta is None else round(eta, 2),
            "time": round(now, 3),
        }
        rundir.write_progress(self.out, record)


class ProgressBar(TrainerCallback):
    """A single tqdm bar with loss, learning rate and time left (replaces the Trainer's printer)."""

    def __init__(self) -> None:
        self.bar = None
        self.loss = None

    def on_train_begin(self, args, state, control, **kwargs):
        state._tb_first_step = state.global_step
        if state.is_world_process_zero:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=state.max_steps, initial=state.global_step, desc="train", dynamic_ncols=True
            )

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is None or not logs:
            return
        post = {}
        if "loss" in logs:
            post["loss"] = f"{logs['loss']:.4f}"
            post["lr"] = f"{logs.get('learning_rate', 0):.2e}"
        if "eval_loss" in logs:
            post["eval_loss"] = f"{logs['eval_loss']:.4f}"
        if post:
            self.bar.set_postfix(post, refresh=True)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class Interrupt(TrainerCallback):
    """First Ctrl-C (or SIGTERM): save a checkpoint at the end of the current step and stop cleanly."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame):
        if self.requested:  # a second Ctrl-C stops at once
            raise Interrupted
        self.requested = True
        if os.environ.get("RANK", "0") == "0":  # several processes: one message
            print(
                "\nstopping: saving a checkpoint after this step (Ctrl-C again to abort now)", file=sys.stderr
            )

    def on_step_end(self, args, state, control, **kwargs):
        if self.requested_anywhere(args.device):
            control.should_save = True
            control.should_training_stop = True
        return control

    def requested_anywhere(self, device) -> bool:
        """Several processes: all stop after the same step when any of them was signalled (one tiny all-reduce
        per step); a rank that stopped alone would leave the others waiting for it forever."""
        import torch
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            flag = torch.tensor([int(self.requested)], device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            self.requested = bool(flag.item())
        return self.requested
