"""Environment tab (the tutorial's step 2): `tuneboard env` in the browser: GPUs, CPU, memory, disk and
package versions, and the training memory estimate of the top bar's model with what fits this machine.

Interface layer (gradio). The report and the estimate are hardware/'s; this tab only shows them.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from .common import Ctx, error_text

METHODS = ("lora", "qlora", "freeze", "full")


def check(lang: str, model: str, method: str, cutoff_len: float, batch_size: float) -> tuple[str, str]:
    """(the machine's report, the estimate for `model`) as the CLI prints them; a failure becomes the message."""
    from ..errors import TuneboardError
    from ..hardware import advice
    from ..hardware import report as env

    try:
        report = env.report()
        text = env.format_report(report)
    except OSError as exc:
        return error_text(lang, exc), ""
    if not (model or "").strip():
        return text, ""
    try:
        estimate = advice.model_advice(model.strip(), report, method, int(cutoff_len), int(batch_size))
    except TuneboardError as exc:
        return text, error_text(lang, exc)
    return text, estimate.strip()


def build(ctx: Ctx) -> dict[str, Any]:
    ui = ctx.ui
    with ui.tab("tab.env", id="env", elem_id="tab-env") as tab:
        ui.md("env.intro")
        with gr.Row():
            method = ui.box(
                gr.Dropdown, "env.method", choices=list(METHODS), value="lora", elem_id="env-method"
            )
            cutoff = ui.box(gr.Number, "env.cutoff", value=1024, precision=0, minimum=1, elem_id="env-cutoff")
            batch = ui.box(gr.Number, "env.batch", value=1, precision=0, minimum=1, elem_id="env-batch")
        run = ui.button("env.check", variant="primary", elem_id="env-check")
        report = ui.box(gr.Code, "env.report", language=None, interactive=False, elem_id="env-report")
        estimate = ui.box(gr.Code, "env.estimate", language=None, interactive=False, elem_id="env-estimate")
        model = ctx.top[0]
        run.click(check, [ctx.lang, model, method, cutoff, batch], [report, estimate])
    return {"tab": tab}
