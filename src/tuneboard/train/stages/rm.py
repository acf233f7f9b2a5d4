"""Reward model on preference pairs: a value head (one linear layer, hidden size -> 1) reads the hidden state of
each row's last token; the loss is -log sigmoid(r_chosen - r_rejected), the metric the share of pairs with
r_chosen > r_rejected (`rewards/accuracies`, `eval_rewards/accuracies` on held-out pairs).

The output directory is a plain transformers sequence-classification model (LoRA merged into it, the head
saved as `score.weight`, num_labels 1): `AutoModelForSequenceClassification.from_pretrained(output_dir)` scores
a conversation as the logit at its last token. Each checkpoint holds the head beside the adapter or model
(rundir.VALUE_HEAD), so resume_from_checkpoint continues with the trained head, not a fresh one.

Training layer, a stage beside sft.py and dpo.py; trainer.BaseTrainer does the rest.
"""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ... import rundir
from ...data.collate import PairCollator
from ...errors import TuneboardError
from ...files import fsync_tree, replace_dir
from ..trainer import BaseTrainer


class RewardTrainer(BaseTrainer):
    def __init__(self, model: Any, args: Any, data: Any, tokenizer: Any, cfg: Any) -> None:
        super().__init__(model=model, args=args, data=data, tokenizer=tokenizer, cfg=cfg)
        self.model_accepts_loss_kwargs = (
            False  # the loss is a mean over pairs: the Trainer divides by accumulation
        )
        hidden = model.config.hidden_size
        head = torch.nn.Linear(hidden, 1, bias=False)
        torch.nn.init.normal_(head.weight, std=1 / (hidden + 1) ** 0.5)
        dtype = next(p for p in model.parameters() if p.is_floating_point()).dtype
        model.add_module(
            "v_head", head.to(dtype=dtype)
        )  # trained with the model's other trainable parameters

    def make_collator(self, model: Any, data: Any, tokenizer: Any) -> Any:
        return PairCollator(pad_id=tokenizer.pad_token_id)

    def scores(self, model: Any, inputs: dict[str, Any]) -> torch.Tensor:
        """The value head at each row's last real token (rows are right-padded)."""
        fields = {k: v for k, v in inputs.items() if k != "labels"}
        out = model(**fields, output_hidden_states=True, logits_to_keep=1, use_cache=False)
        last = inputs["attention_mask"].sum(-1) - 1
        hidden = out.hidden_states[-1][torch.arange(last.size(0), device=last.device), last]
        head = self.accelerator.unwrap_model(model).v_head
        return head(hidden.to(head.weight.dtype)).squeeze(-1).float()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training:
            self.count_tokens(inputs)
        r = self.scores(model, inputs)
        n = r.size(0) // 2
        chosen, rejected = r[:n], r[n:]
        loss = -F.logsigmoid(chosen - rejected).mean()
        self.record(
            {
                "rewards/chosen": chosen.detach().mean(),
                "rewards/rejected": rejected.detach().mean(),
                "rewards/accuracies": (chosen > rejected).float().mean(),
                "rewards/margins": (chosen - rejected).detach().mean(),
            },
            training=model.training,
        )
        return (loss, None) if return_outputs else loss

    # ---- checkpoints: the head beside the adapter (PEFT saves only its own weights) ----

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        super()._save(output_dir, state_dict=state_dict)
        if self.args.should_save:
            from safetensors.torch import save_file

            head = self.accelerator.unwrap_model(self.model).v_head
            path = Path(output_dir or self.args.output_dir) / rundir.VALUE_HEAD
            save_file({"weight": head.weight.detach().cpu().contiguous()}, str(path))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        path = Path(resume_from_checkpoint) / rundir.VALUE_HEAD
        if not path.is_file():
            raise TuneboardError(
                f"{resume_from_checkpoint} has no {rundir.VALUE_HEAD}: it was not written by a reward-model run "
                "of this version; start the run again without resume_from_checkpoint"
            )
        from safetensors.torch import load_file

        head = self.accelerator.unwrap_model(model if model is not None else self.model).v_head
        with torch.no_grad():
            head.weight.copy_(load_file(str(path))["weight"].to(head.weight.device, head.weight.dtype))

    def save_final(self, out: Path) -> None:
        """A sequence-classification model (staged, then each file renamed into output_dir)."""
        from transformers import AutoModelForSequenceClassification

        if not self.is_world_process_zero():
            return
        model = self.accelerator.unwrap_model(self.model)
        weight = model.v_head.weight.detach().float().cpu()
        base = copy.deepcopy(model).cpu()
        if hasattr(base, "merge_and_unload"):  # LoRA: merged into the base weights
            base = base.merge_and_unload()
        config = copy.deepcopy(base.config)
        config.num_labels, config.pad_token_id, config.architectures = (
            1,
            self.processing_class.pad_token_id,
            None,
        )
        config.problem_type = "regression"
        reward = AutoModelForSequenceClassification.from_config(config, dtype=torch.float32)
        state = {k: v for k, v in base.state_dict().items() if not k.startswith(("lm_head.", "v_head."))}
        state["score.weight"] = weight
        missing, unexpected = reward.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise RuntimeError(
                f"reward model weights do not fit: missing {missing[:3]}, unexpected {unexpected[:3]}"
            )
        staging = rundir.staging_path(out, "final")
        shutil.rmtree(staging, ignore_errors=True)
        reward.save_pretrained(str(staging))
        self.processing_class.save_pretrained(str(staging))
        fsync_tree(staging)
        for p in sorted(staging.iterdir()):
            replace_dir(p, out / p.name) if p.is_dir() else os.replace(p, out / p.name)
        staging.rmdir()
