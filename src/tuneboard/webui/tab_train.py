"""Train tab: datasets, grouped hyperparameters, preview / save the YAML, Start / Stop, live progress,
loss plot and log tail.

Interface layer (gradio). Training is `tuneboard train <yaml>` run by the workspace's Runner; the plot
reads the job's training log (rundir.read_log).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from .. import rundir
from ..train.plot import smooth
from . import jobs, lookup
from .common import Ctx, dataset_choices, error_text, model_settings, modelscope, ok_text, relpath
from .locales import t
from .runner import JobRunning

SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup", "polynomial")
COMPUTE = ("fp32", "bf16", "fp16")
# the config key each control sets: its help text is the control's info where the locale has none
SETTINGS = {
    "train.learning_rate": "learning_rate",
    "train.epochs": "num_train_epochs",
    "train.max_steps": "max_steps",
    "train.max_samples": "max_samples",
    "train.cutoff_len": "cutoff_len",
    "train.seed": "seed",
    "train.batch_size": "per_device_train_batch_size",
    "train.grad_accum": "gradient_accumulation_steps",
    "train.scheduler": "lr_scheduler_type",
    "train.warmup_ratio": "warmup_ratio",
    "train.lora_rank": "lora_rank",
    "train.lora_alpha": "lora_alpha",
    "train.lora_dropout": "lora_dropout",
    "train.lora_target": "lora_target",
    "train.freeze_layers": "freeze_trainable_layers",
    "train.logging_steps": "logging_steps",
    "train.save_steps": "save_steps",
    "train.val_size": "val_size",
    "train.packing": "packing",
    "train.train_on_prompt": "train_on_prompt",
    "train.resume": "resume_from_checkpoint",
}


def default_run() -> str:
    return f"train_{jobs.stamp()}"


def fresh_run() -> tuple[str, str]:
    name = default_run()
    return name, f"configs/{name}.yaml"


def progress_html(lang: str, status: dict[str, Any]) -> str:
    step, total = int(status.get("step") or 0), int(status.get("total") or 0)
    pct = 100.0 * step / total if total else 0.0
    text = t(lang, "train.progress", step=step, total=total or "?", pct=f"{pct:.0f}")
    if status.get("remaining") and status.get("state") == "running":
        text += " · " + t(lang, "train.remaining", left=status["remaining"])
    return (
        f'<div class="tb-progress" data-step="{step}" data-total="{total}">'
        f'<div class="tb-bar" style="width:{pct:.1f}%"></div></div>'
        f'<div class="tb-progress-text" id="progress-text">{html.escape(text)}</div>'
    )


def loss_frame(lang: str, output_dir: str | None) -> pd.DataFrame | None:
    """The loss curves as long-form rows (step, loss, curve); None before the first logged step (a plot
    first given an empty frame draws no lines later)."""
    rows = rundir.read_log(output_dir) if output_dir else []
    points = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    evals = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r]
    raw, smoothed, ev = t(lang, "plot.loss"), t(lang, "plot.smoothed"), t(lang, "plot.eval_loss")
    data = [(s, v, raw) for s, v in points]
    data += [(s, v, smoothed) for (s, _), v in zip(points, smooth([v for _, v in points]), strict=False)]
    data += [(s, v, ev) for s, v in evals]
    if not data:
        return None
    frame = pd.DataFrame(data, columns=["step", "loss", "curve"])
    return frame.astype({"step": "int64", "loss": "float64", "curve": "str"})


def status_text(lang: str, status: dict[str, Any], ws: Any) -> str:
    state = status.get("state", "idle")
    if state == "idle":
        return t(lang, "job.idle", kind=t(lang, f"kind.{status.get('kind') or 'train'}"))
    return t(
        lang,
        f"job.{state}",
        kind=t(lang, f"kind.{status['kind']}"),
        config=relpath(ws, status["config"]),
        output=relpath(ws, status["output_dir"]),
        pid=status["pid"],
        code=status.get("returncode"),
    )


def render(ctx: Ctx, lang: str, status: dict[str, Any]) -> list[Any]:
    """Outputs of the live panel: status, progress, loss plot, log tail."""
    return [
        status_text(lang, status, ctx.ws),
        progress_html(lang, status),
        loss_frame(lang, status.get("output_dir") if status.get("state") != "idle" else None),
        status.get("log_tail", ""),
    ]


def build(ctx: Ctx) -> dict[str, Any]:
    ui = ctx.ui
    ui.settings.update(SETTINGS)
    with ui.tab("tab.train", id="train", elem_id="tab-train") as tab:
        with gr.Row(equal_height=True):
            datasets = ui.box(
                gr.Dropdown,
                "train.datasets",
                info=True,
                multiselect=True,
                choices=dataset_choices(ctx.ws, "data"),
                scale=4,
                elem_id="train-datasets",
            )
        with ui.accordion("train.basic", open=True):
            with gr.Row():
                lr = ui.box(gr.Textbox, "train.learning_rate", value="5e-5", elem_id="lr")
                epochs = ui.box(gr.Number, "train.epochs", value=3.0, elem_id="epochs")
                max_steps = ui.box(
                    gr.Number, "train.max_steps", info=True, value=0, precision=0, elem_id="max-steps"
                )
                max_samples = ui.box(
                    gr.Number, "train.max_samples", value=100000, precision=0, elem_id="max-samples"
                )
                cutoff = ui.box(gr.Number, "train.cutoff_len", value=2048, precision=0, elem_id="cutoff")
            with gr.Row():
                batch = ui.box(gr.Number, "train.batch_size", value=2, precision=0, elem_id="batch")
                accum = ui.box(gr.Number, "train.grad_accum", value=8, precision=0, elem_id="accum")
                sched = ui.box(gr.Dropdown, "train.scheduler", choices=list(SCHEDULERS), value="cosine")
                warmup = ui.box(gr.Number, "train.warmup_ratio", value=0.0)
                compute = ui.box(gr.Dropdown, "train.compute", info=True, choices=list(COMPUTE), value="fp32")
        with ui.accordion("train.lora", open=False):
            with gr.Row():
                rank = ui.box(gr.Number, "train.lora_rank", value=8, precision=0)
                alpha = ui.box(gr.Number, "train.lora_alpha", value=16, precision=0)
                dropout = ui.box(gr.Number, "train.lora_dropout", value=0.0)
                target = ui.box(gr.Textbox, "train.lora_target", info=True, value="all")
        with ui.accordion("train.freeze", open=False):
            freeze_layers = ui.box(gr.Number, "train.freeze_layers", value=2, precision=0)
        with ui.accordion("train.other", open=False):
            with gr.Row():
                logging = ui.box(
                    gr.Number, "train.logging_steps", value=5, precision=0, elem_id="logging-steps"
                )
                save = ui.box(gr.Number, "train.save_steps", value=100, precision=0)
                val = ui.box(gr.Number, "train.val_size", info=True, value=0.0)
                seed = ui.box(gr.Number, "train.seed", value=42, precision=0)
            with gr.Row():
                packing = ui.box(gr.Checkbox, "train.packing", value=False)
                on_prompt = ui.box(gr.Checkbox, "train.train_on_prompt", value=False)
            extra = ui.box(gr.Textbox, "train.extra", info=True, placeholder=True, lines=2)
        with gr.Row(equal_height=True):
            run = ui.box(gr.Textbox, "train.run_name", value=default_run(), elem_id="run-name")
            cfg_path = ui.box(
                gr.Textbox, "train.config_path", value=f"configs/{default_run()}.yaml", elem_id="config-path"
            )
            resume = ui.box(
                gr.Dropdown, "train.resume", info=True, choices=[], value=None, elem_id="resume-run"
            )
        with gr.Row():
            preview = ui.button("train.preview", elem_id="train-preview")
            save_btn = ui.button("train.save", elem_id="train-save")
            start = ui.button("train.start", variant="primary", elem_id="train-start")
            stop = ui.button("train.stop", variant="stop", elem_id="train-stop")
        msg = gr.Markdown(elem_id="train-msg")
        command = ui.box(gr.Code, "train.command", language="yaml", visible=False, elem_id="train-command")
        status = gr.Markdown(elem_id="train-status")
        progress = gr.HTML(progress_html(ui.lang, {}), elem_id="train-progress")
        with gr.Row():
            plot = ui.box(
                gr.LinePlot,
                "train.plot",
                value=None,
                x="step",
                y="loss",
                color="curve",
                height=300,
                elem_id="loss-plot",
            )
            log = ui.box(
                gr.Textbox, "train.log", lines=14, max_lines=14, autoscroll=True, elem_id="train-log"
            )
    ctx.pickers.append((datasets, "train"))
    form_inputs = [datasets, lr, epochs, max_steps, max_samples, cutoff, batch, accum, sched, warmup, compute]
    form_inputs += [rank, alpha, dropout, target, freeze_layers, logging, save, val, seed, packing, on_prompt]
    form_keys = [
        "datasets", "learning_rate", "num_train_epochs", "max_steps", "max_samples", "cutoff_len",
        "per_device_train_batch_size", "gradient_accumulation_steps", "lr_scheduler_type", "warmup_ratio",
        "compute_type", "lora_rank", "lora_alpha", "lora_dropout", "lora_target", "freeze_trainable_layers",
        "logging_steps", "save_steps", "val_size", "seed", "packing", "train_on_prompt",
    ]  # fmt: skip

    def collect(args: tuple) -> tuple[dict[str, Any], str, Path, bool]:
        lang, model, hub, ft, output, template, trust, dataset_dir, run_name, path, res, extra_text = args[
            :12
        ]
        form = dict(zip(form_keys, args[12:], strict=True))
        settings = model_settings(ctx, model, hub, ft, output, template, trust)
        if not res and not (run_name or "").strip():
            raise ValueError(t(lang, "train.need_run"))
        out, resuming = lookup.run_target(ctx.ws, model, ft, run_name or "", res)
        form.update(dataset_dir=dataset_dir, resume=resuming)
        data = jobs.train_config(ctx.ws, settings, form, str(out), extra_text)
        jobs.validate(data)
        return data, path, Path(data["output_dir"]), modelscope(hub)

    def do_preview(*args: Any):
        lang = args[0]
        try:
            data, path, _, ms = collect(args)
            rel = relpath(ctx.ws, ctx.ws.resolve(path))
        except Exception as exc:
            return error_text(lang, exc), gr.update(visible=False)
        text = f"# {jobs.command_line('train', rel, ms)}\n" + jobs.to_yaml(data)
        return "", gr.update(value=text, visible=True)

    def do_save(*args: Any):
        lang = args[0]
        try:
            data, path, _, _ = collect(args)
            written = jobs.write(ctx.ws, path, data)
        except Exception as exc:
            return error_text(lang, exc)
        return ok_text(t(lang, "train.saved", file=relpath(ctx.ws, written)))

    def do_start(*args: Any):
        lang = args[0]
        try:
            if ctx.runner.is_running():
                raise JobRunning(ctx.runner.job)
            data, path, out, ms = collect(args)
            written = jobs.write(ctx.ws, path, data)
            ctx.runner.start("train", written, ctx.ws.root / out, jobs.hub_env(ms))
        except Exception as exc:
            gr.Warning(error_text(lang, exc))
            return error_text(lang, exc), gr.update(), gr.update(), gr.update()
        rel = relpath(ctx.ws, written)
        # the next Start is a fresh run unless a run is picked again
        return (ok_text(t(lang, "train.started", file=rel)), *fresh_run(), gr.update(value=None))

    def resume_choices(model: str, ft: str, current: str | None):
        runs = lookup.resumable_runs(ctx.ws, model, ft)
        return gr.update(choices=runs, value=current if current in runs else None)

    def do_stop(lang: str):
        if ctx.runner.status("train")["state"] != "running":
            return t(lang, "train.nothing")
        ctx.runner.stop()
        return ok_text(t(lang, "train.stopping"))

    inputs = [ctx.lang, *ctx.top, ctx.dataset_dir, run, cfg_path, resume, extra, *form_inputs]
    preview.click(do_preview, inputs, [msg, command])
    save_btn.click(do_save, inputs, msg)
    start.click(do_start, inputs, [msg, run, cfg_path, resume], concurrency_limit=1)
    top_pick = [ctx.top[0], ctx.top[2], resume]
    resume.focus(resume_choices, top_pick, resume, show_progress="hidden")
    stop.click(do_stop, ctx.lang, msg)
    ctx.demo.load(fresh_run, None, [run, cfg_path], show_progress="hidden")  # a new name per page
    run.input(
        lambda r: f"configs/{r.strip()}.yaml" if r and r.strip() else "",
        run,
        cfg_path,
        show_progress="hidden",
    )
    return {"tab": tab, "outputs": [status, progress, plot, log]}
