"""The HF Trainer, specialised for every stage: tuneboard's collators, token counting, extra metrics
(`record`), Ctrl-C handling, checkpoints written under a temporary name and renamed when complete, and the
final outputs (model, tokenizer, results, plot). Each stage (stages/sft.py, dpo.py, kto.py, rm.py) adds its loss.

Training layer (train/workflow.py builds it through `stages.stage_trainer`).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from .. import rundir
from ..config import Config
from ..data.collate import PadCollator, PaddingFreeCollator
from ..data.pipeline import DataBundle
from ..errors import TuneboardError
from ..files import fsync_tree, replace_dir, write_error
from ..model.adapters import save_pissa_converted
from ..model.attention import use_packed_attention
from ..model.fused import fuse_mlps
from .callbacks import Interrupt, JsonlLogger, ProgressBar, ProgressWriter, TokenCounter
from .optimizer import build as build_optimizer


class BaseTrainer(Trainer):
    def __init__(self, model: Any, args: Any, data: DataBundle, tokenizer: Any, cfg: Config) -> None:
        super().__init__(
            model=model,
            args=args,
            train_dataset=data.train,
            eval_dataset=data.eval,
            data_collator=self.make_collator(model, data, tokenizer),
            processing_class=tokenizer,
        )
        self.cfg = cfg
        self.data = data
        # ZeRO-3 and FSDP gather a module's weights only inside its own forward; fused.py reads them outside it
        from transformers.integrations import is_deepspeed_zero3_enabled

        self.fused = cfg.fused_ops and not (self.is_fsdp_enabled or is_deepspeed_zero3_enabled())
        if self.fused:
            fuse_mlps(model)
        self.counter = TokenCounter()
        self.interrupt = Interrupt()
        self._extra: dict[str, dict[str, list[float]]] = {}  # record(): metrics waiting for the next log
        self.remove_callback(PrinterCallback)
        self.remove_callback(ProgressCallback)
        out = args.output_dir
        for cb in (JsonlLogger(out, self.counter), ProgressWriter(out), ProgressBar(), self.interrupt):
            self.add_callback(cb)

    def create_optimizer(self, model: Any = None) -> Any:
        """LoRA+ has its own parameter groups (optimizer.py); otherwise the Trainer's optimizer."""
        if self.optimizer is None:
            self.optimizer = build_optimizer(self)
        return super().create_optimizer(model) if self.optimizer is None else self.optimizer

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        """group_by_length: the Trainer's LengthGroupedSampler, given the lengths our dataset already knows
        (the Trainer would otherwise read every sample once to find them)."""
        ds = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.train_sampling_strategy == "group_by_length" and hasattr(ds, "lengths"):
            from transformers.trainer_pt_utils import LengthGroupedSampler

            size = self.args.train_batch_size * self.args.gradient_accumulation_steps
            return LengthGroupedSampler(size, lengths=ds.lengths().tolist())
        return super()._get_train_sampler(train_dataset)

    def make_collator(self, model: Any, data: DataBundle, tokenizer: Any) -> Any:
        """Padded rows, or padding-free rows (per-sample attention) when data.padding_free; stages with pairs
        override it."""
        if data.padding_free:
            attn = getattr(model.config, "_attn_implementation", "")
            if attn == "sdpa":
                use_packed_attention(model)
            return PaddingFreeCollator(flash=attn == "flash_attention_2", varlen=attn == "sdpa")
        return PadCollator(pad_id=tokenizer.pad_token_id)

    def count_tokens(self, inputs: dict[str, Any]) -> None:
        """Count the tokens of a training batch (for tokens/s); `mask` rows of 1 for real tokens or a 4D mask."""
        mask = inputs.get("attention_mask")
        self.counter.tokens += int(
            inputs["input_ids"].numel() if mask is None or mask.dim() == 4 else mask.sum()
        )

    def record(self, metrics: dict[str, Any], training: bool) -> None:
        """Extra metrics of one batch (rewards, log-probs, ...): averaged over the batches since the last log and
        logged with the loss (`eval_` prefixed in evaluation)."""
        store = self._extra.setdefault("train" if training else "eval", {})
        for name, value in metrics.items():
            store.setdefault(name, []).append(
                float(value.detach().mean() if hasattr(value, "detach") else value)
            )

    def _flush_records(self, logs: dict[str, float]) -> None:
        kind = "eval" if any(k.startswith("eval_") for k in logs) else "train"
        store = self._extra.pop(kind, {})
        prefix = "eval_" if kind == "eval" else ""
        for name, values in store.items():
            (total,) = self._all_ranks_float(sum(values) / max(len(values), 1))
            logs[prefix + name] = round(total / self.accelerator.num_processes, 6)

    def _all_ranks_float(self, *values: float) -> list[float]:
        if self.accelerator.num_processes == 1:
            return list(values)
        summed = self.accelerator.reduce(torch.tensor(values, device=self.args.device), "sum")
        return [float(x) for x in summed.tolist()]

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        if "loss" in logs:  # a training log: every rank gets here at the same step (the loss was gathered)
            (self.counter.all_tokens,) = self._all_ranks(self.counter.tokens)
        if "loss" in logs or "eval_loss" in logs:
            self._flush_records(logs)
        super().log(logs, *args, **kwargs)

    def _all_ranks(self, *counts: int) -> list[int]:
        """These counts summed over every process (a collective: all ranks must call it together)."""
        if self.accelerator.num_processes == 1:
            return list(counts)
        summed = self.accelerator.reduce(torch.tensor(counts, device=self.args.device), "sum")
        return [int(x) for x in summed.tolist()]

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        with torch.no_grad():
            loss = self.compute_loss(model, dict(inputs))
        return loss.detach(), None, None

    # ---- checkpoints: written under a temporary name, renamed when complete ----

    def _get_output_dir(self, trial: Any) -> str:
        staging = getattr(self, "_tb_staging", None)
        return staging if staging else super()._get_output_dir(trial)

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        """The Trainer's checkpoint (model, optimizer, scheduler, RNG, the trainer state last), written into
        rundir.staging_path (a hidden `.partial` folder) and renamed into place once every file is on disk; only then
        are old checkpoints rotated out (save_total_limit). A kill or a full disk mid-save leaves the previous
        checkpoints as they were and no checkpoint that looks complete."""
        from transformers.trainer_utils import rotate_checkpoints

        run_dir = Path(super()._get_output_dir(trial))
        name = rundir.checkpoint_name(self.state.global_step)
        staging, final = rundir.staging_path(run_dir, name), run_dir / name
        main = self.args.should_save
        kept = "the previous checkpoints are kept; once it can be written, continue with resume_from_checkpoint=true"
        try:
            if main:
                shutil.rmtree(staging, ignore_errors=True)
                staging.mkdir(parents=True)
            self.accelerator.wait_for_everyone()
            self._tb_staging = str(staging)
            try:
                super()._save_checkpoint(
                    model, trial
                )  # writes the checkpoint in staging (rotation there is a no-op)
            finally:
                self._tb_staging = None
            best = self.state.best_model_checkpoint
            if best and Path(best).parent == staging:  # the Trainer recorded the staging path
                self.state.best_model_checkpoint = str(final)
                if main:
                    self.state.save_to_json(str(rundir.trainer_state_path(staging / name)))
            self.accelerator.wait_for_everyone()  # every rank wrote its part (rng_state_<rank>.pth)
            if main:
                fsync_tree(staging / name)
                replace_dir(staging / name, final)
                staging.rmdir()
        except Exception as exc:
            err = write_error(run_dir, exc, kept) if main else None
            if main:
                shutil.rmtree(staging, ignore_errors=True)
            if err is None:
                raise
            raise TuneboardError(f"checkpoint at step {self.state.global_step}: {err}") from None
        if main:
            rotate_checkpoints(
                output_dir=str(run_dir),
                save_total_limit=self.args.save_total_limit,
                best_model_checkpoint=self.state.best_model_checkpoint,
                use_mtime=True,
            )
        self.accelerator.wait_for_everyone()

    def train_interruptibly(self, resume: str | None) -> bool:
        """Train; True when stopped by Ctrl-C/SIGTERM (a checkpoint was saved)."""
        if self.is_world_process_zero():  # what a killed save left behind
            rundir.remove_staging(self.args.output_dir)
        self.interrupt.install()
        try:
            self._tb_start = time.time()
            self.train_output = self.train(resume_from_checkpoint=resume)
        finally:
            self.interrupt.uninstall()
            for cb in self.callback_handler.callbacks:  # an error message must start on a line of its own
                if isinstance(cb, ProgressBar) and cb.bar is not None:
                    cb.bar.close()
                    cb.bar = None
        return self.interrupt.requested

    def save_final(self, out: Path) -> None:
        """The trained adapter or model, saved beside the checkpoints: written into a staging folder, then each
        complete file is renamed into output_dir (the results, written after, mark the run finished)."""
        staging = rundir.staging_path(out, "final")
        main = self.is_world_process_zero()
        try:
            if main:
                shutil.rmtree(staging, ignore_errors=True)
            self.save_model(str(staging))
            if self.cfg.pissa_init and main:  # a plain LoRA of the original base, not of PiSSA's residual
                model = self.accelerator.unwrap_model(self.model)
                save_pissa_converted(model, staging, rundir.pissa_init_path(out))
            self.accelerator.wait_for_everyone()
            if main:
                note_weights(staging, self.cfg, self.args)
                fsync_tree(staging)
                for p in sorted(staging.iterdir()):
                    replace_dir(p, out / p.name) if p.is_dir() else os.replace(p, out / p.name)
                staging.rmdir()
        except Exception as exc:
            kept = (
                "the checkpoints are kept; once it can be written, continue with resume_from_checkpoint=true"
            )
            err = write_error(out, exc, kept) if main else None
            if main:
                shutil.rmtree(staging, ignore_errors=True)
            if err is None:
                raise
            raise TuneboardError(f"final model: {err}") from None

    def finish(self, runtime: float, template: Any) -> dict[str, Any]:
        """Save the model (adapter or full) with the tokenizer and chat template, results and the plot."""
        from ..data.templates.hf_jinja import to_jinja

        out = Path(self.args.output_dir)
        tok = self.processing_class
        if hasattr(template, "name"):
            tok.chat_template = to_jinja(template)
        self.save_final(out)
        metrics = dict(self.train_output.metrics)
        steps = max(self.state.global_step, 1)
        tokens, trained = self._all_ranks(self.counter.tokens, self.counter.trained)
        results = {
            "train_runtime": round(runtime, 4),
            "train_loss": metrics.get("train_loss"),
            "train_samples_per_second": metrics.get("train_samples_per_second"),
            "train_steps_per_second": round(steps / max(runtime, 1e-9), 4),
            "train_tokens_per_second": round(tokens / max(runtime, 1e-9), 2),
            "train_trained_tokens_per_second": round(trained / max(runtime, 1e-9), 2),
            "epoch": metrics.get("epoch"),
            "global_step": self.state.global_step,
            "template": getattr(template, "name", "auto"),
            "train_samples": len(self.data.train),
            "dropped_samples": self.data.train.stats.dropped_no_target,
        }
        if self.data.eval is not None:
            last = [
                h
                for h in self.state.log_history
                if "eval_loss" in h and h.get("step") == self.state.global_step
            ]
            results["eval_loss"] = last[-1]["eval_loss"] if last else self.evaluate().get("eval_loss")
        if self.is_world_process_zero():
            rundir.write_results(out, results)
            if self.cfg.plot_loss:
                from .plot import plot_loss

                plot_loss(out)
        return results


def note_weights(folder: Path, cfg: Config, args: Any) -> None:
    """State in the output's model card (README.md; peft writes one for adapters) what the saved weights are:
    their dtype as stored, read back from the safetensors files, and the precision training computed in."""
    from safetensors import safe_open

    dtypes = set()
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), "pt") as f:
            dtypes |= {f.get_slice(k).get_dtype() for k in f.keys()}
    if not dtypes:
        return
    stored = ", ".join(sorted(dtypes)).lower()
    compute = "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"  # as resolved for this machine
    card = folder / "README.md"
    text = card.read_text(encoding="utf-8") if card.exists() else f"# {cfg.output_dir}\n"
    section = (
        f"\n## tuneboard\n\n- stage: {cfg.stage}, method: {cfg.finetuning_type}\n"
        f"- saved weights: {stored} (safetensors)\n- training computed in: {compute}\n"
    )
    card.write_text(text.rstrip("\n") + "\n" + section, encoding="utf-8")
