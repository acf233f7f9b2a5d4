"""The Train tab's live panel: status line, progress bar, loss plot (with the preference stages' reward
curves), log tail, run list and the runs offered for Resume; refreshed by the app's timer.

Interface layer (gradio updates; the numbers come from rundir's readers, runs.py and the Runner).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from .. import rundir
from ..errors import TuneboardError
from ..train.plot import smooth
from . import lookup, runs
from .common import Ctx, relpath
from .locales import LANGS, t

# logged values drawn beside the loss, when the trainer log has them (dpo / rm / kto)
EXTRA_CURVES = (  # dpo / rm: accuracy and margin; kto: its chosen reward and KL estimate
    ("rewards/accuracies", "plot.reward_accuracy"),
    ("rewards/margins", "plot.reward_margin"),
    ("rewards/chosen", "plot.reward_chosen"),
    ("kl", "plot.kl"),
)
CURVE_COLORS = {
    "plot.loss": "#9ca3af",
    "plot.smoothed": "#2563eb",
    "plot.eval_loss": "#ea580c",
    "plot.reward_accuracy": "#16a34a",
    "plot.reward_margin": "#9333ea",
    "plot.reward_chosen": "#0d9488",
    "plot.kl": "#ca8a04",
}
ENDED = ("finished", "stopped", "failed")


def color_map() -> dict[str, str]:
    """Each curve's colour, under its name in every language (the legend is named in the page's language)."""
    return {t(lang, key): color for lang in LANGS for key, color in CURVE_COLORS.items()}


def legend_html(lang: str, frame: pd.DataFrame | None) -> str:
    """The plot's legend, drawn by the page: the chart's own is clipped when it first draws in a hidden tab."""
    if frame is None:
        return ""
    present = set(frame["curve"])
    items = [
        f'<span class="tb-key"><i style="background:{color}"></i>{html.escape(t(lang, key))}</span>'
        for key, color in CURVE_COLORS.items()
        if t(lang, key) in present
    ]
    return f'<div class="tb-legend">{"".join(items)}</div>'


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
    """The loss curves (and reward curves of the preference stages) as long-form rows (step, loss, curve);
    None before the first logged step (a plot first given an empty frame draws no lines later)."""
    rows = rundir.read_log(output_dir) if output_dir else []
    points = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    evals = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r]
    raw, smoothed, ev = t(lang, "plot.loss"), t(lang, "plot.smoothed"), t(lang, "plot.eval_loss")
    data = [(s, v, raw) for s, v in points]
    data += [(s, v, smoothed) for (s, _), v in zip(points, smooth([v for _, v in points]), strict=False)]
    data += [(s, v, ev) for s, v in evals]
    for key, label in EXTRA_CURVES:
        data += [(r["step"], r[key], t(lang, label)) for r in rows if key in r and "step" in r]
    if not data:
        return None
    frame = pd.DataFrame(data, columns=["step", "loss", "curve"])
    return frame.astype({"step": "int64", "loss": "float64", "curve": "str"})


def loss_summary(lang: str, output_dir: str) -> str:
    """A finished run's losses: the average over all steps (train_loss) and the last logged step's."""
    results = rundir.read_results(output_dir) or {}
    average, last = results.get("train_loss"), runs.last_loss(Path(output_dir))
    if average is None and last is None:
        return ""
    show = lambda v: f"{v:.4f}" if isinstance(v, (int, float)) else "?"  # noqa: E731
    return t(lang, "train.loss_summary", average=show(average), last=show(last))


def status_text(lang: str, status: dict[str, Any], ws: Any) -> str:
    state = status.get("state", "idle")
    if state == "idle":
        return t(lang, "job.idle", kind=t(lang, f"kind.{status.get('kind') or 'train'}"))
    text = t(
        lang,
        f"job.{state}",
        kind=t(lang, f"kind.{status['kind']}"),
        config=relpath(ws, status["config"]),
        output=relpath(ws, status["output_dir"]),
        pid=status["pid"],
        code=status.get("returncode"),
    )
    if state == "finished" and status.get("kind") == "train":
        summary = loss_summary(lang, status["output_dir"])
        text += f" · {summary}" if summary else ""
    return text


def runs_frame(lang: str, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The run list with localized headers and statuses."""
    cells = [
        [
            *(r[c] for c in runs.COLUMNS[:5]),
            t(lang, f"runs.{r['status']}"),
            "" if r["loss"] is None else f"{r['loss']:.4f}",
        ]
        for r in rows
    ]
    return pd.DataFrame(cells, columns=[t(lang, f"runs.col.{c}") for c in runs.COLUMNS])


def render(ctx: Ctx, lang: str, status: dict[str, Any], model: str | None = None, ft: str | None = None):
    """Outputs of the live panel: status, progress, loss plot and its legend, log tail, run list, Resume's
    choices."""
    try:
        rows = runs.run_list(ctx.ws, model or "", ft or "", status) if model and ft else []
        resumable = lookup.resumable_runs(ctx.ws, model, ft) if model and ft else []
    except TuneboardError:  # a model name that is no path here: no runs to list
        rows, resumable = [], []
    frame = loss_frame(lang, status.get("output_dir") if status.get("state") != "idle" else None)
    return [
        status_text(lang, status, ctx.ws),
        progress_html(lang, status),
        frame,
        legend_html(lang, frame),
        status.get("log_tail", ""),
        runs_frame(lang, rows),
        gr.update(choices=resumable),
    ]


def after_job(ctx: Ctx, status: dict[str, Any], seen: dict[str, Any], model: str, ft: str) -> list[Any]:
    """[Train message, top bar output] when the train job changes: the message of the action that started
    it is cleared when the job ends (one status line), and a finished run becomes the picked output once,
    so Evaluate, Chat and Export start from it. Records what it did in `seen`."""
    state, started = status.get("state"), status.get("started")
    message = gr.skip()
    previous = seen.get("train_state")
    if previous is not None and previous != state and state in ENDED:
        message = ""
    seen["train_state"] = state
    output = gr.skip()
    if state == "finished" and started and seen.get("picked") != started:
        out = Path(status["output_dir"])
        try:
            base = lookup.saves_dir(ctx.ws, model, ft).resolve()
            choices = lookup.list_outputs(ctx.ws, model, ft)
        except TuneboardError:  # a model name that is no path here
            base, choices = None, []
        if out.resolve().parent == base and out.name in choices:
            output = gr.update(choices=choices, value=out.name)
            seen["picked"] = started
    return [message, output]
