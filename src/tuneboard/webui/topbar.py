"""The top bar: language, model, hub, finetuning type, output (adapter / checkpoint), template.

Interface layer (gradio). Its values are inputs to every tab's actions.
"""

from __future__ import annotations

import gradio as gr

from ..data.templates.named import names as template_names
from ..errors import TuneboardError
from ..hub import use_modelscope
from . import lookup, suggest
from .common import FINETUNING, HUBS, Ctx, error_text
from .locales import choices as language_choices


def build(ctx: Ctx) -> None:
    ui, ws = ctx.ui, ctx.ws
    models = [lookup.BUILTIN, *lookup.local_models(ws), *lookup.HUB_MODELS]
    with gr.Row(equal_height=True, elem_id="topbar"):
        ctx.lang = ui.box(
            gr.Dropdown,
            "top.lang",
            choices=language_choices(),
            value=ui.lang,
            scale=1,
            min_width=110,
            elem_id="lang",
        )
        model = ui.box(
            gr.Dropdown,
            "top.model",
            info=True,
            choices=models,
            value=lookup.BUILTIN,
            allow_custom_value=True,
            scale=3,
            elem_id="model",
        )
        hub = ui.box(
            gr.Radio,
            "top.hub",
            choices=list(HUBS),
            value="modelscope" if use_modelscope() else "huggingface",
            scale=2,
            elem_id="hub",
        )
        first_method = suggest.preset(lookup.BUILTIN)["finetuning_type"]  # the demo's, for builtin:tiny
        ft = ui.box(
            gr.Dropdown, "top.finetuning", choices=list(FINETUNING), value=first_method, scale=1, elem_id="ft"
        )
    with gr.Row():
        output = ui.box(
            gr.Dropdown,
            "top.output",
            info=True,
            choices=outputs_for(ctx, lookup.BUILTIN, first_method),
            value=None,
            allow_custom_value=False,
            scale=3,
            elem_id="output",
        )
        refresh = ui.button("top.refresh", size="sm", scale=0, min_width=100, elem_id="refresh-outputs")
        template = ui.box(
            gr.Dropdown,
            "top.template",
            choices=template_names(),
            value=lookup.guess_template(ws, lookup.BUILTIN),
            scale=2,
            elem_id="template",
        )
        trust = ui.box(gr.Checkbox, "top.trust", info=True, value=False, scale=2, elem_id="trust")
    ui.md("top.root", {"root": str(ws.root)}, elem_id="root-note")
    ctx.top = [model, hub, ft, output, template, trust]

    def on_model(lang: str, name: str, ft_value: str):
        try:
            tpl = lookup.guess_template(ws, name)
            choices = outputs_for(ctx, name, ft_value)
        except TuneboardError as exc:
            gr.Warning(error_text(lang, exc))
            return gr.update(), gr.update(choices=[], value=None)
        return gr.update(value=tpl), gr.update(choices=choices, value=None)

    def on_outputs(lang: str, name: str, ft_value: str, current: str | None):
        try:
            choices = outputs_for(ctx, name, ft_value)
        except TuneboardError as exc:
            gr.Warning(error_text(lang, exc))
            return gr.update(choices=[], value=None)
        return gr.update(choices=choices, value=current if current in choices else None)

    model.change(on_model, [ctx.lang, model, ft], [template, output])
    ft.change(on_outputs, [ctx.lang, model, ft, output], [output])
    refresh.click(on_outputs, [ctx.lang, model, ft, output], [output])
    output.focus(on_outputs, [ctx.lang, model, ft, output], [output], show_progress="hidden")


def outputs_for(ctx: Ctx, model: str, ft: str) -> list[str]:
    return lookup.list_outputs(ctx.ws, model, ft)
