"""Evaluate tab: `tuneboard eval` on chosen test sets; the metrics table and a sample of predictions next to
their labels (both read through rundir).

Interface layer (gradio).
"""

from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd

from .. import rundir
from . import jobs, lookup
from .common import (
    Ctx,
    dataset_choices,
    default_pick,
    error_text,
    model_settings,
    modelscope,
    ok_text,
    relpath,
)
from .locales import t
from .runner import JobRunning
from .tab_train import status_text

SAMPLE = 20
PROMPT_TAIL = 300  # characters of a prompt shown: its end, where the question is


def results(lang: str, output_dir: str | None) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """The metrics, the first predictions beside their prompts and labels, and a warning when most
    predictions are empty."""
    metrics = rundir.read_predict_results(output_dir) if output_dir else None
    rows = [(k, f"{v:.4g}" if isinstance(v, float) else str(v)) for k, v in (metrics or {}).items()]
    table = pd.DataFrame(rows, columns=[t(lang, "col.metric"), t(lang, "col.value")])
    records = rundir.read_predictions(output_dir) if output_dir else []
    preds = []
    for rec in records[:SAMPLE]:
        prompt = str(rec.get("prompt", ""))
        prompt = prompt if len(prompt) <= PROMPT_TAIL else "…" + prompt[-PROMPT_TAIL:]
        label, pred = str(rec.get("label", "")), str(rec.get("predict", ""))
        preds.append((prompt, label, pred, "✓" if pred.strip() == label.strip() else "✗"))
    cols = [t(lang, "col.input"), t(lang, "col.label"), t(lang, "col.prediction"), t(lang, "col.match")]
    empty = sum(1 for rec in records if not str(rec.get("predict", "")).strip())
    warning = t(lang, "eval.empty_preds", n=empty, total=len(records)) if empty * 2 > len(records) else ""
    return table, pd.DataFrame(preds, columns=cols), warning


def render(ctx: Ctx, lang: str, status: dict[str, Any]) -> list[Any]:
    done = status.get("state") == "finished"
    table, preds, warning = results(lang, status.get("output_dir") if done else None)
    return [status_text(lang, status, ctx.ws), status.get("log_tail", ""), table, preds, warning]


def build(ctx: Ctx) -> dict[str, Any]:
    ui = ctx.ui
    choices = dataset_choices(ctx.ws, "data")
    with ui.tab("tab.eval", id="eval", elem_id="tab-eval") as tab:
        datasets = ui.box(
            gr.Dropdown,
            "eval.datasets",
            multiselect=True,
            choices=choices,
            value=default_pick(choices, "test"),
            elem_id="eval-datasets",
        )
        with gr.Row():
            cutoff = ui.box(gr.Number, "eval.cutoff_len", value=1024, precision=0)
            max_samples = ui.box(
                gr.Number, "eval.max_samples", value=100000, precision=0, elem_id="eval-max-samples"
            )
            batch = ui.box(gr.Number, "eval.batch_size", value=8, precision=0)
            max_new = ui.box(gr.Number, "eval.max_new_tokens", value=128, precision=0, elem_id="eval-max-new")
        with gr.Row():
            sample = ui.box(gr.Checkbox, "eval.do_sample", info=True, value=False)
            temperature = ui.box(
                gr.Slider, "eval.temperature", minimum=0.01, maximum=1.5, value=0.95, step=0.01
            )
            top_p = ui.box(gr.Slider, "eval.top_p", minimum=0.01, maximum=1.0, value=0.7, step=0.01)
        out_dir = ui.box(gr.Textbox, "eval.output_dir", info=True, placeholder=True, elem_id="eval-output")
        with gr.Row():
            start = ui.button("eval.start", variant="primary", elem_id="eval-start")
            stop = ui.button("train.stop", variant="stop", elem_id="eval-stop")
        msg = gr.Markdown(elem_id="eval-msg")
        status = gr.Markdown(elem_id="eval-status")
        with gr.Row():
            metrics = ui.box(gr.Dataframe, "eval.metrics", interactive=False, elem_id="eval-metrics")
            log = ui.box(gr.Textbox, "train.log", lines=10, max_lines=10, autoscroll=True, elem_id="eval-log")
        warn = gr.Markdown(elem_id="eval-warn")
        preds = ui.box(gr.Dataframe, "eval.predictions", interactive=False, wrap=True, elem_id="eval-preds")
        chosen = gr.State(False)  # the test sets were picked by hand: no longer moved to a new split
    datasets.input(lambda: True, None, chosen, show_progress="hidden")
    ctx.pickers += [(datasets, "test"), (chosen, "chosen")]

    def do_start(
        lang, model, hub, ft, output, template, trust, dataset_dir, names, cut, ms, bs, mnt, smp, tmp, tp, out
    ):
        try:
            if ctx.runner.is_running():
                raise JobRunning(ctx.runner.job)
            settings = model_settings(ctx, model, hub, ft, output, template, trust)
            name = f"eval_{jobs.stamp()}"
            target = out.strip() if out and out.strip() else str(lookup.saves_dir(ctx.ws, model, ft) / name)
            form = dict(
                datasets=names, dataset_dir=dataset_dir, cutoff_len=cut, max_samples=ms,
                per_device_eval_batch_size=bs, max_new_tokens=mnt, do_sample=smp, temperature=tmp, top_p=tp,
            )  # fmt: skip
            data = jobs.eval_config(ctx.ws, settings, form, target)
            written = jobs.write(ctx.ws, f"configs/{name}.yaml", data)
            ctx.runner.start(
                "eval", written, ctx.ws.resolve(data["output_dir"]), jobs.hub_env(modelscope(hub))
            )
        except Exception as exc:
            gr.Warning(error_text(lang, exc))
            return error_text(lang, exc)
        return ok_text(t(lang, "eval.started", file=relpath(ctx.ws, written)))

    def do_stop(lang: str):
        if ctx.runner.status("eval")["state"] != "running":
            return t(lang, "train.nothing")
        ctx.runner.stop()
        return ok_text(t(lang, "eval.stopping"))

    inputs = [ctx.lang, *ctx.top, ctx.dataset_dir, datasets, cutoff, max_samples, batch, max_new]
    start.click(do_start, [*inputs, sample, temperature, top_p, out_dir], msg, concurrency_limit=1)
    stop.click(do_stop, ctx.lang, msg)
    return {"tab": tab, "outputs": [status, log, metrics, preds, warn]}
