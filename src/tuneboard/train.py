"""`tuneboard train`: config + data + model -> HF Trainer -> adapter or model, logs, plot, checkpoints.

Training layer: uses data/ and model/, called by cli.py (and by the web UI through the CLI).
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from .config import Config, replace
from .data.loader import DataBundle, load_split, prepare_datasets
from .data.templates import get_template, tool_templates
from .errors import ConfigError, TuneboardError
from .files import unwritable_reason, write_error
from .model.adapters import count_parameters, prepare
from .model.load import check_source, load_model, load_tokenizer, pick_template, resolve_source

log = logging.getLogger(__name__)
FINISHED_MARKERS = (
    "all_results.json",
    "adapter_model.safetensors",
    "model.safetensors",
    "model.safetensors.index.json",
)


def is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


def say(msg: str) -> None:
    if is_main_process():
        print(msg, flush=True)


def warn(msg: str) -> None:
    if is_main_process():
        print(f"warning: {msg}", file=sys.stderr, flush=True)


def cpu_bf16_supported() -> bool:
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(cfg: Config) -> str:
    """'bf16' | 'fp16' | 'fp32'; a precision the machine cannot do falls back with one warning."""
    import torch

    cuda = torch.cuda.is_available() and not cfg.use_cpu
    if cfg.bf16:
        if (cuda and torch.cuda.is_bf16_supported()) or (not cuda and cpu_bf16_supported()):
            return "bf16"
        fallback = "fp16" if cuda else "fp32"
        warn(f"bf16: true is not supported on this {'GPU' if cuda else 'CPU'}; training in {fallback}")
        return fallback
    if cfg.fp16:
        if cuda:
            return "fp16"
        warn("fp16: true needs a CUDA GPU; training in fp32 on the CPU")
    return "fp32"


def check_output_dir(cfg: Config) -> None:
    out = Path(cfg.output_dir)
    if out.exists() and not out.is_dir():
        raise TuneboardError(f"output_dir {out}: exists and is not a directory")
    reason = unwritable_reason(out)
    if reason:  # found now, not after the model has loaded and the first checkpoint is due
        raise TuneboardError(f"output_dir {out}: cannot write there ({reason})")
    finished = [m for m in FINISHED_MARKERS if (out / m).exists()]
    if finished and not cfg.overwrite_output_dir and not cfg.resume_from_checkpoint:
        raise TuneboardError(
            f"output_dir {out}: already holds a finished run ({finished[0]}); set overwrite_output_dir: true, "
            "choose another output_dir, or continue it with resume_from_checkpoint: true"
        )


def clear_previous_run(out: Path) -> None:
    """overwrite_output_dir: remove only what a run writes, never other files of the user's."""
    for p in out.glob("checkpoint-*"):
        shutil.rmtree(p, ignore_errors=True)
    for name in (*FINISHED_MARKERS, "trainer_log.jsonl", "training_loss.png", "train_results.json"):
        (out / name).unlink(missing_ok=True)


CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def is_complete_checkpoint(path: Path) -> bool:
    """trainer_state.json is written last, and the folder is renamed to checkpoint-N only after it."""
    try:
        state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return False
    return isinstance(state, dict) and "global_step" in state


def complete_checkpoints(out: Path) -> list[Path]:
    """Complete checkpoints by step. A save that was killed is never picked: it lives under a temporary
    name (`.checkpoint-N.partial`), or, written by another tool in place, lacks a readable trainer_state.json."""
    found = []
    for p in out.glob("checkpoint-*"):
        m = CHECKPOINT.match(p.name)
        if m and p.is_dir() and is_complete_checkpoint(p):
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def check_deepspeed(cfg: Config) -> None:
    """`deepspeed:` names a JSON file that exists and parses (relative paths are from the working directory)."""
    if not cfg.deepspeed:
        return
    path = Path(cfg.deepspeed).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"{cfg.source}: deepspeed: {cfg.deepspeed} not found (a DeepSpeed JSON config, "
            "e.g. examples/deepspeed/ds_z3_config.json; relative paths are read from the working directory)"
        )
    try:
        ds = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{cfg.source}: deepspeed: {path} is not valid JSON ({exc})") from None
    if not isinstance(ds, dict):
        raise ConfigError(f"{cfg.source}: deepspeed: {path} must hold a JSON object")
    import importlib.util

    if importlib.util.find_spec("deepspeed") is None:
        raise ConfigError(
            f"{cfg.source}: deepspeed: {path} needs the DeepSpeed package: pip install deepspeed"
        )


def preflight(cfg: Config) -> tuple[list[Any], list[Any]]:
    """Checks that need no torch, run once before any training process starts; the data is read and checked
    here too (before a model is downloaded), and its (train, eval) conversations returned for reuse."""
    if not cfg.datasets:
        raise ConfigError(f"{cfg.source}: 'dataset' is required for training")
    if cfg.max_steps <= 0 and cfg.num_train_epochs == 0:
        raise ConfigError(
            f"{cfg.source}: nothing to train: 'num_train_epochs' is 0 and 'max_steps' is not set"
        )
    check_deepspeed(cfg)
    check_output_dir(cfg)
    resolve_resume(cfg)
    check_source(cfg)
    if cfg.template not in (None, "", "auto"):
        get_template(cfg.template)
    return load_split(cfg)


def warn_unrendered_tools(conversations: tuple[list, list], template: Any) -> None:
    """Tool definitions a template does not write are not trained on: say so once."""
    with_tools = sum(1 for c in (*conversations[0], *conversations[1]) if c.tools)
    if with_tools and not template.renders_tools:
        warn(
            f"{with_tools} records carry tools (function definitions), which template {template.name} does not "
            f"render: they are trained without them (templates {', '.join(tool_templates())} render them)"
        )


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def resolve_resume(cfg: Config) -> str | None:
    value = cfg.resume_from_checkpoint
    if not value:
        return None
    if str(value).lower() == "true":
        ckpts = complete_checkpoints(Path(cfg.output_dir))
        if not ckpts:
            raise TuneboardError(f"resume_from_checkpoint: no complete checkpoint in {cfg.output_dir}")
        return str(ckpts[-1])
    path = Path(value)
    if not path.is_dir():
        raise TuneboardError(f"resume_from_checkpoint: {path} is not a checkpoint directory")
    if not is_complete_checkpoint(path):
        raise TuneboardError(
            f"resume_from_checkpoint: {path} is not a complete checkpoint (no readable trainer_state.json)"
        )
    return str(path)


def check_trainer_names(cfg: Config) -> None:
    """`optim` and `lr_scheduler_type` name things inside transformers: checked against its lists."""
    from transformers.trainer_utils import SchedulerType
    from transformers.training_args import OptimizerNames

    for key, enum in (("optim", OptimizerNames), ("lr_scheduler_type", SchedulerType)):
        value, allowed = getattr(cfg, key), [e.value for e in enum]
        if value not in allowed:
            close = difflib.get_close_matches(str(value), allowed, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; e.g. {', '.join(allowed[:5])}"
            raise ConfigError(f"{cfg.source}: '{key}' is {value!r}, which transformers does not know{hint}")


def training_args(cfg: Config, precision: str, has_eval: bool) -> Any:
    from transformers import TrainingArguments

    warmup: float = cfg.warmup_steps if cfg.warmup_steps else cfg.warmup_ratio
    eval_strategy = cfg.eval_strategy if has_eval else "no"
    if has_eval and eval_strategy == "no" and cfg.eval_steps:
        eval_strategy = "steps"
    report = "none" if cfg.report_to in ("none", "", None) else cfg.report_to.split(",")
    # several processes without CUDA (torchrun on CPUs): accelerate sets up gloo only when told to use the CPU
    cpu_ddp = world_size() > 1 and not _cuda_available()
    return TrainingArguments(
        output_dir=cfg.output_dir,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        per_device_eval_batch_size=cfg.per_device_eval_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps,
        lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=warmup,
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        optim=cfg.optim,
        logging_steps=cfg.logging_steps,
        save_strategy=cfg.save_strategy,
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        save_only_model=cfg.save_only_model,
        eval_strategy=eval_strategy,
        eval_steps=cfg.eval_steps or (cfg.save_steps if eval_strategy == "steps" else None),
        report_to=report,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=cfg.use_cpu or cpu_ddp,
        ddp_backend="gloo" if cpu_ddp or (cfg.use_cpu and world_size() > 1) else None,
        seed=cfg.seed,
        data_seed=cfg.seed,
        # batches of similar lengths pad less; a padding-free batch has no padding to save
        train_sampling_strategy=(
            "group_by_length" if cfg.group_by_length and not (cfg.packing or cfg.padding_free) else "random"
        ),
        ddp_timeout=cfg.ddp_timeout,
        dataloader_num_workers=cfg.dataloader_num_workers,
        deepspeed=cfg.deepspeed,
        remove_unused_columns=False,
        dataloader_pin_memory=_cuda_available(),
        disable_tqdm=True,
        label_names=["labels"],
    )


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def summary(cfg: Config, model: Any, data: DataBundle, args: Any, precision: str, base: str) -> None:
    total, trainable = count_parameters(model)
    world = world_size()
    eff = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * world
    s = data.train.stats
    lines = [
        f"model      {base}  ({total / 1e6:.2f}M parameters, {trainable / 1e6:.3f}M trainable = "
        f"{100 * trainable / max(total, 1):.2f}%, {cfg.finetuning_type})",
        f"template   {data.template_name}",
        f"train      {len(data.train)} samples, {s.tokens} tokens ({s.trained_tokens} trained) "
        f"from {', '.join(cfg.datasets)}",
    ]
    if data.eval is not None:
        lines.append(f"eval       {len(data.eval)} samples, {data.eval.stats.tokens} tokens")
    if s.truncated or s.dropped_no_target:
        lines.append(
            f"cutoff     {s.truncated} samples truncated to cutoff_len={cfg.cutoff_len}; "
            f"{s.dropped_no_target} dropped (no trainable token left)"
            + (f", e.g. {s.dropped_examples[0]}" if s.dropped_examples else "")
        )
    lines.append(
        f"batch      {cfg.per_device_train_batch_size} x {cfg.gradient_accumulation_steps} accumulation x "
        f"{world} process(es) = {eff} samples per step, {'padding-free' if data.padding_free else 'padded'}"
    )
    lines.append(f"device     {args.device} ({precision})")
    say("\n".join(lines))


def run(cfg: Config, conversations: tuple[list[Any], list[Any]] | None = None) -> dict[str, Any]:
    """Train; returns the final metrics. Everything is validated before output_dir is touched (`conversations`:
    what `preflight` returned, when the caller ran it)."""
    if conversations is None:
        conversations = preflight(cfg)
    resume = resolve_resume(cfg)
    check_trainer_names(cfg)
    precision = resolve_precision(cfg)
    # TrainingArguments first: it starts the process group (several processes), and DeepSpeed ZeRO-3 / FSDP
    # must be configured before the model is loaded so that its weights are partitioned as they load
    try:
        args = training_args(cfg, precision, has_eval=bool(cfg.eval_datasets or cfg.val_size))
    except (ValueError, ImportError) as exc:  # transformers' own checks of these settings
        raise ConfigError(f"{cfg.source}: {str(exc).strip().splitlines()[0]}") from None
    # downloads, the tiny model and tokenization run once per machine; the other ranks then read the caches
    with args.main_process_first(local=True, desc="model download and preprocessing"):
        source = resolve_source(cfg)
        tokenizer = load_tokenizer(source.base_dir, cfg)
        template = pick_template(cfg.template, tokenizer, source.base_dir)
        first = args.local_process_index == 0
        if first:
            warn_unrendered_tools(conversations, template)
        data = prepare_datasets(
            cfg if first else replace(cfg, overwrite_cache=False), tokenizer, template, conversations
        )

    import torch

    from .trainer import SFTTrainer

    dtype = None
    if precision in ("bf16", "fp16") and cfg.finetuning_type != "full" and torch.cuda.is_available():
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16  # frozen weights in half precision
    from transformers import set_seed

    set_seed(cfg.seed)  # before the adapters are created: LoRA's initial weights come from this RNG
    model = load_model(source.base_dir, cfg, dtype=dtype)
    model = prepare(model, cfg, [str(a) for a in source.adapters])

    out = Path(cfg.output_dir)
    if cfg.overwrite_output_dir and not resume and is_main_process():
        clear_previous_run(out)
    trainer = SFTTrainer(model=model, args=args, data=data, tokenizer=tokenizer, cfg=cfg)
    summary(cfg, model, data, args, precision, source.base_name)
    if is_main_process():
        out.mkdir(parents=True, exist_ok=True)
        cfg.save(out / "tuneboard_config.yaml")

    start = time.time()
    try:
        interrupted = trainer.train_interruptibly(resume)
        runtime = time.time() - start
        if not interrupted:
            results = trainer.finish(runtime, template)
    except Exception as exc:  # a disk that fills up or turns read-only mid-run (log, checkpoint, final model)
        err = write_error(out, exc, "the complete checkpoints in it are kept")
        if err is None:
            raise
        raise err from None
    finally:
        end_process_group()
    if interrupted:
        say(
            f"\nstopped at step {trainer.state.global_step}; a checkpoint was saved in {out}.\n"
            f"continue with: tuneboard train {cfg.source} resume_from_checkpoint=true"
        )
        return {"interrupted": True, "step": trainer.state.global_step}
    say(f"\ndone in {runtime:.1f}s: final loss {results.get('train_loss', float('nan')):.4f}")
    say(f"wrote {out}/ : " + ", ".join(sorted(p.name for p in out.iterdir() if not p.name.startswith("."))))
    return results


def end_process_group() -> None:
    """Several processes: leave the process group cleanly (evaluation afterwards runs on rank 0 alone)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()  # every rank done with its files before the group goes away
        dist.destroy_process_group()


def main(cfg: Config) -> int:
    try:
        run(cfg)
    except KeyboardInterrupt:
        print("aborted", file=sys.stderr)
        return 130
    return 0
