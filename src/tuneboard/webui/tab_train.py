"""Train tab: datasets and stage, grouped hyperparameters (the suggested ones from suggest.py), preview /
save the YAML, Start / Stop / Resume, and the live panel (train_live.py: progress, loss plot, log, run list).

Interface layer (gradio). Training is `tuneboard train <yaml>` run by the workspace's Runner.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from ..config import STAGES, STAGES_NOT_YET
from ..method_keys import PREF_LOSSES
from . import jobs, lookup, suggest, train_live
from .common import Ctx, dataset_choices, error_text, model_settings, modelscope, ok_text, relpath
from .locales import t
from .runner import JobRunning
from .train_live import loss_frame, progress_html, status_text

__all__ = ["build", "loss_frame", "progress_html", "status_text"]  # the live panel's helpers, as before

SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup", "polynomial")
COMPUTE = ("fp32", "bf16", "fp16")
STAGE_CHOICES = tuple(s for s in STAGES if s not in STAGES_NOT_YET)  # a stage made runnable appears here
# the config key each control sets: its help text is the control's info where the locale has none
SETTINGS = {
    "train.stage": "stage",
    "train.pref_beta": "pref_beta",
    "train.pref_loss": "pref_loss",
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
    "train.weight_decay": "weight_decay",
    "train.lora_rank": "lora_rank",
    "train.lora_alpha": "lora_alpha",
    "train.lora_dropout": "lora_dropout",
    "train.lora_target": "lora_target",
    "train.use_dora": "use_dora",
    "train.use_rslora": "use_rslora",
    "train.pissa_init": "pissa_init",
    "train.loraplus_lr_ratio": "loraplus_lr_ratio",
    "train.freeze_layers": "freeze_trainable_layers",
    "train.logging_steps": "logging_steps",
    "train.save_steps": "save_steps",
    "train.val_size": "val_size",
    "train.packing": "packing",
    "train.train_on_prompt": "train_on_prompt",
    "train.neftune": "neftune_noise_alpha",
    "train.resume": "resume_from_checkpoint",
}
# the form's settings that a picked model's preset (suggest.preset) fills, in the order of their controls
PRESET_KEYS = (
    "learning_rate",
    "num_train_epochs",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
)
PRESET_KEYS += ("weight_decay", "lr_scheduler_type", "warmup_ratio", "cutoff_len", "logging_steps")
PRESET_KEYS += ("save_steps", "seed")


def default_run() -> str:
    return f"train_{jobs.stamp()}"


def fresh_run() -> tuple[str, str]:
    name = default_run()
    return name, f"configs/{name}.yaml"


def preset_kind(model: str | None) -> str:
    return "tiny" if suggest.is_builtin(model) else "pretrained"


def note_text(lang: str, model: str | None, ft: str | None) -> str:
    """Why the form holds what it holds: the demo's recipe for builtin:tiny, the suggested rate otherwise."""
    if suggest.is_builtin(model):
        return t(lang, "train.tiny_note", settings=suggest.summary(suggest.TINY))
    lr = suggest.lr_text(suggest.learning_rate(model, ft or "lora"))
    return t(lang, "train.lr_note", method=ft or "lora", lr=lr)


def shown(key: str, value: Any) -> Any:
    """A preset's value as its control holds it (the learning rate is text: 5e-4)."""
    return suggest.lr_text(value) if key == "learning_rate" else value


def build(ctx: Ctx) -> dict[str, Any]:
    ui = ctx.ui
    ui.settings.update(SETTINGS)
    start_values = suggest.preset(lookup.BUILTIN)  # the top bar starts on builtin:tiny
    v = {k: shown(k, x) for k, x in start_values.items()}
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
            stage = ui.box(
                gr.Dropdown, "train.stage", choices=list(STAGE_CHOICES), value="sft", elem_id="stage"
            )
            beta = ui.box(gr.Number, "train.pref_beta", value=0.1, visible=False, elem_id="pref-beta")
            pref_loss = ui.box(
                gr.Dropdown, "train.pref_loss", choices=list(PREF_LOSSES), value="sigmoid", visible=False
            )
        note = gr.Markdown(
            note_text(ui.lang, lookup.BUILTIN, start_values["finetuning_type"]), elem_id="train-note"
        )
        with ui.accordion("train.basic", open=True):
            with gr.Row():
                lr = ui.box(gr.Textbox, "train.learning_rate", value=v["learning_rate"], elem_id="lr")
                epochs = ui.box(gr.Number, "train.epochs", value=v["num_train_epochs"], elem_id="epochs")
                max_steps = ui.box(
                    gr.Number, "train.max_steps", info=True, value=0, precision=0, elem_id="max-steps"
                )
                max_samples = ui.box(
                    gr.Number, "train.max_samples", value=100000, precision=0, elem_id="max-samples"
                )
                cutoff = ui.box(
                    gr.Number, "train.cutoff_len", value=v["cutoff_len"], precision=0, elem_id="cutoff"
                )
            with gr.Row():
                batch = ui.box(
                    gr.Number,
                    "train.batch_size",
                    value=v["per_device_train_batch_size"],
                    precision=0,
                    elem_id="batch",
                )
                accum = ui.box(
                    gr.Number,
                    "train.grad_accum",
                    value=v["gradient_accumulation_steps"],
                    precision=0,
                    elem_id="accum",
                )
                sched = ui.box(
                    gr.Dropdown, "train.scheduler", choices=list(SCHEDULERS), value=v["lr_scheduler_type"]
                )
                warmup = ui.box(gr.Number, "train.warmup_ratio", value=v["warmup_ratio"])
                decay = ui.box(
                    gr.Number, "train.weight_decay", value=v["weight_decay"], elem_id="weight-decay"
                )
                compute = ui.box(gr.Dropdown, "train.compute", info=True, choices=list(COMPUTE), value="fp32")
        with ui.accordion("train.lora", open=False):
            with gr.Row():
                rank = ui.box(gr.Number, "train.lora_rank", value=8, precision=0)
                alpha = ui.box(gr.Number, "train.lora_alpha", value=16, precision=0)
                dropout = ui.box(gr.Number, "train.lora_dropout", value=0.0)
                target = ui.box(gr.Textbox, "train.lora_target", info=True, value="all")
            with gr.Row():
                dora = ui.box(gr.Checkbox, "train.use_dora", value=False, elem_id="use-dora")
                rslora = ui.box(gr.Checkbox, "train.use_rslora", value=False, elem_id="use-rslora")
                pissa = ui.box(gr.Checkbox, "train.pissa_init", value=False, elem_id="pissa-init")
                loraplus = ui.box(gr.Number, "train.loraplus_lr_ratio", value=0, elem_id="loraplus")
        with ui.accordion("train.freeze", open=False):
            freeze_layers = ui.box(gr.Number, "train.freeze_layers", value=2, precision=0)
        with ui.accordion("train.other", open=False):
            with gr.Row():
                logging = ui.box(
                    gr.Number,
                    "train.logging_steps",
                    value=v["logging_steps"],
                    precision=0,
                    elem_id="logging-steps",
                )
                save = ui.box(gr.Number, "train.save_steps", value=v["save_steps"], precision=0)
                val = ui.box(gr.Number, "train.val_size", info=True, value=0.0)
                seed = ui.box(gr.Number, "train.seed", value=v["seed"], precision=0)
            with gr.Row():
                packing = ui.box(gr.Checkbox, "train.packing", value=False)
                on_prompt = ui.box(gr.Checkbox, "train.train_on_prompt", value=False)
                neftune = ui.box(gr.Number, "train.neftune", value=0, elem_id="neftune")
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
        plot = ui.box(
            gr.LinePlot,
            "train.plot",
            value=None,
            x="step",
            y="loss",
            color="curve",
            color_map=train_live.color_map(),
            colors_in_legend=[],  # no chart legend: legend_html draws one
            x_title="step",
            height=320,
            elem_id="loss-plot",
        )
        legend = gr.HTML("", elem_id="loss-legend")
        log = ui.box(
            gr.Textbox,
            "train.log",
            lines=14,
            max_lines=14,
            autoscroll=True,
            elem_id="train-log",
            elem_classes=["tb-log"],
        )
        runs = ui.box(gr.Dataframe, "train.runs", interactive=False, wrap=True, elem_id="train-runs")
        # states live inside the tab: one between two tabs shifts where gradio's tab bar puts the tabs after
        # it when they are first opened (Export's button then read "Evaluate").
        # The learning rate the form last put in the box: another value there was typed, and suggestions keep it
        lr_given = gr.State(v["learning_rate"])
        preset_of = gr.State(preset_kind(lookup.BUILTIN))  # which preset the form holds
    ctx.pickers.append((datasets, "train"))
    preset_boxes = [lr, epochs, batch, accum, decay, sched, warmup, cutoff, logging, save, seed]
    form_boxes = {
        "datasets": datasets, "stage": stage, "pref_beta": beta, "pref_loss": pref_loss, "max_steps": max_steps,
        "max_samples": max_samples, "compute_type": compute, "lora_rank": rank, "lora_alpha": alpha,
        "lora_dropout": dropout, "lora_target": target, "use_dora": dora, "use_rslora": rslora, "pissa_init": pissa,
        "loraplus_lr_ratio": loraplus, "freeze_trainable_layers": freeze_layers, "val_size": val,
        "packing": packing, "train_on_prompt": on_prompt, "neftune_noise_alpha": neftune,
        **dict(zip(PRESET_KEYS, preset_boxes, strict=True)),
    }  # fmt: skip
    form_keys, form_inputs = list(form_boxes), list(form_boxes.values())

    def collect(args: tuple) -> tuple[dict[str, Any], str, Path, bool]:
        lang, model, hub, ft, output, template, trust = args[:7]
        dataset_dir, run_name, path, res, extra_text = args[7:12]
        form = dict(zip(form_keys, args[12:], strict=True))
        settings = model_settings(ctx, model, hub, ft, output, template, trust)
        if not res and not (run_name or "").strip():
            raise ValueError(t(lang, "train.need_run"))
        out, resuming = lookup.run_target(ctx.ws, model, ft, run_name or "", res)
        form.update(dataset_dir=dataset_dir, resume=resuming)
        data = jobs.train_config(ctx.ws, settings, form, str(out), extra_text)
        jobs.validate(data)
        return data, path, Path(data["output_dir"]), modelscope(hub)

    def command_text(data: dict[str, Any], path: str, ms: bool) -> str:
        rel = relpath(ctx.ws, ctx.ws.resolve(path))
        return f"# {jobs.command_line('train', rel, ms)}\n" + jobs.to_yaml(data)

    def do_preview(*args: Any):
        lang = args[0]
        try:
            data, path, _, ms = collect(args)
            text = command_text(data, path, ms)
        except Exception as exc:
            return error_text(lang, exc), gr.update(visible=False)
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
            return error_text(lang, exc), *([gr.skip()] * 4)
        rel = relpath(ctx.ws, written)
        # the preview shows what was started; the next Start is a fresh run unless a run is picked again
        shown_cmd = gr.update(value=command_text(data, path, ms), visible=True)
        return ok_text(t(lang, "train.started", file=rel)), *fresh_run(), gr.update(value=None), shown_cmd

    def resume_choices(model: str, ft: str, current: str | None):
        runs_ = lookup.resumable_runs(ctx.ws, model, ft)
        return gr.update(choices=runs_, value=current if current in runs_ else None)

    def do_stop(lang: str):
        if ctx.runner.status("train")["state"] != "running":
            return t(lang, "train.nothing")
        ctx.runner.stop()
        return ok_text(t(lang, "train.stopping"))

    def on_model(lang: str, model: str, ft: str, kind: str, lr_now: str, given: str):
        """A newly picked kind of model loads its preset (builtin:tiny: the demo's, a typed rate included)."""
        new = preset_kind(model)
        if new == kind:
            return [gr.skip()] * (len(preset_boxes) + 1) + [kind, given, note_text(lang, model, ft)]
        values = suggest.preset(model)
        keep_lr = new != "tiny" and (lr_now or "").strip() != given
        updates = [
            gr.skip() if k == "learning_rate" and keep_lr else shown(k, values[k]) for k in PRESET_KEYS
        ]
        method = values["finetuning_type"]
        given = given if keep_lr else shown("learning_rate", values["learning_rate"])
        return [method, *updates, new, given, note_text(lang, model, method)]

    def on_method(lang: str, model: str, ft: str, lr_now: str, given: str):
        if (lr_now or "").strip() != given:
            return gr.skip(), given, note_text(lang, model, ft)
        rate = suggest.lr_text(suggest.learning_rate(model, ft))
        return rate, rate, note_text(lang, model, ft)

    model_box, ft_box = ctx.top[0], ctx.top[2]
    inputs = [ctx.lang, *ctx.top, ctx.dataset_dir, run, cfg_path, resume, extra, *form_inputs]
    preview.click(do_preview, inputs, [msg, command])
    save_btn.click(do_save, inputs, msg)
    start.click(do_start, inputs, [msg, run, cfg_path, resume, command], concurrency_limit=1)
    top_pick = [model_box, ft_box, resume]
    resume.focus(resume_choices, top_pick, resume, show_progress="hidden")
    stop.click(do_stop, ctx.lang, msg)
    ctx.demo.load(fresh_run, None, [run, cfg_path], show_progress="hidden")  # a new name per page
    run.input(
        lambda r: f"configs/{r.strip()}.yaml" if r and r.strip() else "",
        run,
        cfg_path,
        show_progress="hidden",
    )
    model_box.change(
        on_model,
        [ctx.lang, model_box, ft_box, preset_of, lr, lr_given],
        [ft_box, *preset_boxes, preset_of, lr_given, note],
        show_progress="hidden",
    )
    ft_box.change(
        on_method, [ctx.lang, model_box, ft_box, lr, lr_given], [lr, lr_given, note], show_progress="hidden"
    )
    ctx.lang.change(note_text, [ctx.lang, model_box, ft_box], note, show_progress="hidden")
    stage.change(
        lambda s: (gr.update(visible=s in jobs.PREF_STAGES), gr.update(visible=s == "dpo")),
        stage,
        [beta, pref_loss],
        show_progress="hidden",
    )
    # a preview is never stale: a change to the form hides it (Start shows what it started)
    edits = [c.input for c in [run, cfg_path, resume, extra, *form_inputs]]
    edits += [c.change for c in ctx.top]
    gr.on(
        edits, lambda: gr.update(value="", visible=False), None, command, show_progress="hidden", queue=False
    )
    return {
        "tab": tab,
        "outputs": [status, progress, plot, legend, log, runs, resume],
        "after_job": [msg, ctx.top[3]],
    }
