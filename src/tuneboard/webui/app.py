"""`tuneboard webui`: the whole tutorial in the browser (data -> train -> evaluate -> chat -> export, and the environment check),
in Chinese and English.

Interface layer (gradio). It adds no training, data or generation logic: the Data tab calls
data/commands.py, Train / Evaluate / Export write a YAML and run `tuneboard <command>` through the
workspace's Runner, Chat uses ChatEngine. Paths are confined to the workspace root.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import gradio as gr

from .. import rundir
from . import tab_chat, tab_data, tab_env, tab_eval, tab_export, tab_train, topbar, train_live
from .common import Ctx, refresh_pickers
from .locales import DEFAULT, normalize, t
from .paths import Workspace
from .runner import get_runner
from .server import launch
from .texts import Texts

CSS = """
.tb-progress { width: 100%; height: 14px; background: var(--neutral-200); border-radius: 7px; overflow: hidden; }
.tb-bar { height: 100%; background: var(--color-accent); transition: width .4s; }
.tb-progress-text { font-size: var(--text-sm); margin-top: 4px; }
.tb-preview { white-space: pre-wrap; font-size: var(--text-sm); padding: 8px; }
.tb-preview mark.tb-trained { background: #ffe08a; color: inherit; border-radius: 2px; }
.tb-legend { display: flex; gap: 18px; font-size: var(--text-md); margin: -4px 0 4px 8px; }
.tb-key i { display: inline-block; width: 22px; height: 4px; border-radius: 2px; margin-right: 6px;
  vertical-align: middle; }
.tb-log textarea, #train-log textarea, #eval-log textarea, #export-log textarea {
  font-family: var(--font-mono); font-size: var(--text-sm); white-space: pre; }
"""
# the browser's language picks the first language shown; the switch in the top bar changes it
DETECT_LANG = "() => ((navigator.language || '').toLowerCase().startsWith('zh') ? 'zh' : 'en')"


def _size(path: str | Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return -1


def _mtime(path: str | Path) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


def signature(lang: str, status: dict[str, Any]) -> list[Any]:
    """What changes in a job panel; an unchanged panel is not re-sent."""
    if status.get("state") == "idle":
        return [lang, "idle"]
    return [
        lang,
        status.get("started"),
        status.get("state"),
        _size(status.get("log", "")),
        _size(rundir.log_path(status.get("output_dir", ""))),
        _mtime(rundir.progress_path(status.get("output_dir", ""))),
    ]


def build_app(root: str | Path | None = None, lang: str = DEFAULT) -> gr.Blocks:
    ws = Workspace(root)
    ctx = Ctx(ws=ws, runner=get_runner(ws.root), ui=Texts(normalize(lang)))
    ui = ctx.ui
    with gr.Blocks(title="tuneboard", analytics_enabled=False) as demo:
        ctx.demo = demo
        ui.md("app.title", elem_id="title")
        topbar.build(ctx)
        with gr.Tabs(elem_id="tabs"):
            data = tab_data.build(ctx)
            train = tab_train.build(ctx)
            evaluate = tab_eval.build(ctx)
            chat = tab_chat.build(ctx)
            export = tab_export.build(ctx)
            tab_env.build(ctx)
        seen = gr.State({})
        timer = gr.Timer(1.0)
        panels = [("train", train_live, train), ("eval", tab_eval, evaluate), ("export", tab_export, export)]

        def refresh(lang: str, seen_value: dict[str, Any], model: str, ft: str):
            seen_value = dict(seen_value or {})
            out: list[Any] = []
            for kind, module, parts in panels:
                status = ctx.runner.status(kind)
                top = [model, ft] if kind == "train" else []  # the run list is of the top bar's model
                sig = signature(lang, status) + top
                if seen_value.get(kind) == sig:
                    out += [gr.skip()] * len(parts["outputs"])
                else:
                    seen_value[kind] = sig
                    out += module.render(ctx, lang, status, *top)
            out += train_live.after_job(ctx, ctx.runner.status("train"), seen_value, model, ft)
            return [seen_value, *out]

        panel_outputs = [c for _, _, parts in panels for c in parts["outputs"]]
        panel_outputs += train["after_job"]
        panel_inputs = [ctx.lang, seen, ctx.top[0], ctx.top[2]]
        timer.tick(refresh, panel_inputs, [seen, *panel_outputs], show_progress="hidden", queue=False)
        demo.load(refresh, panel_inputs, [seen, *panel_outputs], show_progress="hidden")

        # datasets: registering or splitting refreshes every dataset picker and the registry table
        pickers = [p for p, _ in ctx.pickers]

        def refresh_data(lang: str, dataset_dir: str, *current: Any):
            return [
                tab_data.registry_table(ctx, lang, dataset_dir),
                *refresh_pickers(ctx, dataset_dir, list(current)),
            ]

        data_inputs = [ctx.lang, ctx.dataset_dir, *pickers]
        for event in data["changed"]:
            event.then(refresh_data, data_inputs, [data["table"], *pickers], show_progress="hidden")
        for tab in (data["tab"], train["tab"], evaluate["tab"]):
            tab.select(refresh_data, data_inputs, [data["table"], *pickers], show_progress="hidden")

        # language: browser language first, then the switch; every recorded string is relabelled
        def relabel(lang: str, dataset_dir: str):
            lang = normalize(lang)
            return [
                *ui.updates(lang),
                tab_data.registry_table(ctx, lang, dataset_dir),
                tab_chat.info_text(lang),
            ]

        ctx.lang.change(relabel, [ctx.lang, ctx.dataset_dir], [*ui.components, data["table"], chat["info"]])
        demo.load(None, None, ctx.lang, js=DETECT_LANG)
    return demo


def run(host: str | None = None, port: int | None = None, root: str | None = None) -> int:
    ws = Workspace(root)
    if not ws.root.is_dir():
        from ..errors import TuneboardError

        raise TuneboardError(f"--root {root}: not a directory")
    demo = build_app(ws.root)
    print(t(DEFAULT, "app.workspace", root=str(ws.root)), flush=True)
    return launch(demo, host, port, "tuneboard webui", css=CSS)
