"""The HF Trainer, specialised: tuneboard's collators, a loss that projects only labelled positions to the
vocabulary, token counting, Ctrl-C handling and the final outputs (model, tokenizer, results, plot).

Training layer (train.py builds it).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from .callbacks import Interrupt, JsonlLogger, ProgressBar, TokenCounter
from .config import Config
from .data.collate import PadCollator, PaddingFreeCollator
from .data.loader import DataBundle
from .data.tokenize import IGNORE
from .files import write_json_atomic


def labelled_loss(model: Any, inputs: dict[str, Any], num_items: Any = None) -> tuple[Any, int]:
    """Cross-entropy over positions whose next token carries a label.

    Hidden states of prompt and padding positions are never projected to the vocabulary: the model
    is asked only for `logits_to_keep` = the labelled positions (a tensor of indices, shared by the rows
    of the batch), which saves the lm_head matmul and the [T, V] logits of every unlabelled position.
    """
    labels = inputs.pop("labels")
    targets = labels[:, 1:]
    valid = targets.ne(IGNORE)
    keep = valid.any(dim=0).nonzero(as_tuple=True)[0]
    n_valid = int(valid.sum())
    if n_valid == 0:  # nothing to learn in this batch (cannot happen after tokenize.py's filter)
        out = model(**inputs, logits_to_keep=1)
        return out.logits.sum() * 0.0, 0
    out = model(**inputs, logits_to_keep=keep, use_cache=False)
    logits = out.logits.float()
    tgt = targets[:, keep]
    loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.size(-1)), tgt.reshape(-1), ignore_index=IGNORE, reduction="sum"
    )
    denom = num_items if num_items is not None else n_valid
    if isinstance(denom, torch.Tensor):
        denom = denom.to(loss.device)
    return loss / denom, n_valid


class SFTTrainer(Trainer):
    def __init__(self, model: Any, args: Any, data: DataBundle, tokenizer: Any, cfg: Config) -> None:
        if data.padding_free:
            collator: Any = PaddingFreeCollator(
                flash=getattr(model.config, "_attn_implementation", "") == "flash_attention_2"
            )
        else:
            collator = PadCollator(pad_id=tokenizer.pad_token_id)
        super().__init__(
            model=model,
            args=args,
            train_dataset=data.train,
            eval_dataset=data.eval,
            data_collator=collator,
            processing_class=tokenizer,
        )
        self.cfg = cfg
        self.data = data
        self.counter = TokenCounter()
        self.interrupt = Interrupt()
        self.remove_callback(PrinterCallback)
        self.remove_callback(ProgressCallback)
        for cb in (JsonlLogger(args.output_dir, self.counter), ProgressBar(), self.interrupt):
            self.add_callback(cb)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training:
            mask = inputs.get("attention_mask")
            n_tokens = int(inputs["input_ids"].numel() if mask is None or mask.dim() == 4 else mask.sum())
            self.counter.tokens += n_tokens
        self.loss_is_scaled_for_ga = num_items_in_batch is not None
        loss, n_valid = labelled_loss(model, dict(inputs), num_items_in_batch)
        if model.training:
            self.counter.trained += n_valid
        return (loss, None) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        with torch.no_grad():
            loss = self.compute_loss(model, dict(inputs))
        return loss.detach(), None, None

    def train_interruptibly(self, resume: str | None) -> bool:
        """Train; True when stopped by Ctrl-C/SIGTERM (a checkpoint was saved)."""
        self.interrupt.install()
        try:
            self._tb_start = time.time()
            self.train_output = self.train(resume_from_checkpoint=resume)
        finally:
            self.interrupt.uninstall()
        return self.interrupt.requested

    def finish(self, runtime: float, template: Any) -> dict[str, Any]:
        """Save the model (adapter or full) with the tokenizer and chat template, results and the plot."""
        from .data.templates import to_jinja

        out = Path(self.args.output_dir)
        tok = self.processing_class
        if hasattr(template, "name"):
            tok.chat_template = to_jinja(template)
        self.save_model(str(out))
        metrics = dict(self.train_output.metrics)
        steps = max(self.state.global_step, 1)
        results = {
            "train_runtime": round(runtime, 4),
            "train_loss": metrics.get("train_loss"),
            "train_samples_per_second": metrics.get("train_samples_per_second"),
            "train_steps_per_second": round(steps / max(runtime, 1e-9), 4),
            "train_tokens_per_second": round(self.counter.tokens / max(runtime, 1e-9), 2),
            "train_trained_tokens_per_second": round(self.counter.trained / max(runtime, 1e-9), 2),
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
            write_json_atomic(out / "all_results.json", results)
            if self.cfg.plot_loss:
                from .plot import plot_loss

                plot_loss(out)
        return results
