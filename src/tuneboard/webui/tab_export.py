"""Export tab: `tuneboard export` of the top bar's model (+ adapter) to a plain HF directory or GGUF;
shows the result and the files written.

Interface layer (gradio).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from ..errors import TuneboardError
from . import jobs, lookup
from .common import Ctx, error_text, human_size, model_settings, modelscope, ok_text, relpath
from .locales import t
from .runner import JobRunning
from .tab_train import status_text

FORMATS = ("hf", "gguf", "gguf-f16", "gguf-f32")
DEVICES = ("cpu", "auto")
DTYPES = ("auto", "float32", "float16", "bfloat16")


def files_table(lang: str, export_dir: str | None) -> pd.DataFrame:
    cols = [t(lang, "col.file"), t(lang, "col.size")]
    base = Path(export_dir) if export_dir else None
    if base is None or not base.is_dir():
        return pd.DataFrame([], columns=cols)
    rows = [
        (p.relative_to(base).as_posix(), human_size(p.stat().st_size))
        for p in sorted(base.rglob("*"))
        if p.is_file()
    ]
    return pd.DataFrame(rows, columns=cols)


def render(ctx: Ctx, lang: str, status: dict[str, Any]) -> list[Any]:
    done = status.get("state") == "finished"
    return [
        status_text(lang, status, ctx.ws),
        status.get("log_tail", ""),
        files_table(lang, status.get("output_dir") if done else None),
    ]


def default_dir(model: str, output: str | None) -> str:
    name = lookup.slug(model) + (f"-{lookup.slug(output.replace('/', '-'))}" if output else "")
    return f"exports/{name}"


def build(ctx: Ctx) -> dict[str, Any]:
    ui = ctx.ui
    with ui.tab("tab.export", id="export", elem_id="tab-export") as tab:
        with gr.Row():
            export_dir = ui.box(
                gr.Textbox,
                "export.dir",
                info=True,
                value=default_dir(lookup.BUILTIN, None),
                elem_id="export-dir",
            )
            size = ui.box(gr.Number, "export.size", info=True, value=5.0, minimum=0.1)
            device = ui.box(gr.Dropdown, "export.device", choices=list(DEVICES), value="cpu")
        with gr.Row():
            fmt = ui.box(
                gr.Dropdown,
                "export.format",
                info=True,
                choices=list(FORMATS),
                value="hf",
                elem_id="export-format",
            )
            dtype = ui.box(gr.Dropdown, "export.dtype", choices=list(DTYPES), value="auto")
            overwrite = ui.box(gr.Checkbox, "export.overwrite", value=False, elem_id="export-overwrite")
        with gr.Row():
            start = ui.button("export.start", variant="primary", elem_id="export-start")
        msg = gr.Markdown(elem_id="export-msg")
        status = gr.Markdown(elem_id="export-status")
        with gr.Row():
            files = ui.box(gr.Dataframe, "export.files", interactive=False, elem_id="export-files")
            log = ui.box(
                gr.Textbox, "train.log", lines=10, max_lines=10, autoscroll=True, elem_id="export-log"
            )

    def do_start(lang, model, hub, ft, output, template, trust, target, sz, dev, form, dt, ow):
        try:
            if ctx.runner.is_running():
                raise JobRunning(ctx.runner.job)
            settings = model_settings(ctx, model, hub, ft, output, template, trust)
            values = dict(
                export_dir=target, export_size=sz, export_device=dev, export_format=form, export_dtype=dt
            )
            data = jobs.export_config(ctx.ws, settings, {**values, "overwrite_export_dir": ow})
            existing = ctx.ws.resolve(data["export_dir"])
            if not ow and existing.is_dir() and any(existing.iterdir()):
                # the export would refuse naming its YAML key; here the key is the Overwrite box
                box = t(lang, "export.overwrite")
                raise TuneboardError(t(lang, "export.exists", dir=relpath(ctx.ws, existing), box=box))
            written = jobs.write(ctx.ws, f"configs/export_{jobs.stamp()}.yaml", data)
            ctx.runner.start(
                "export", written, ctx.ws.resolve(data["export_dir"]), jobs.hub_env(modelscope(hub))
            )
        except Exception as exc:
            gr.Warning(error_text(lang, exc))
            return error_text(lang, exc)
        return ok_text(t(lang, "export.started", file=relpath(ctx.ws, written)))

    start.click(
        do_start,
        [ctx.lang, *ctx.top, export_dir, size, device, fmt, dtype, overwrite],
        msg,
        concurrency_limit=1,
    )
    model, output = ctx.top[0], ctx.top[3]
    for comp in (model, output):
        comp.change(default_dir, [model, output], export_dir, show_progress="hidden")
    return {"tab": tab, "outputs": [status, log, files]}
