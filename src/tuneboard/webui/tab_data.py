"""Data tab: the tutorial's steps 3-6 without editing JSON (identity, upload, check, split, register, preview).

Interface layer (gradio). Every action is a data/commands.py function; this module only gathers inputs,
confines paths to the workspace and shows results.
"""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from ..data import commands as tools
from ..data.registry import spec_for_path
from ..data.templates.named import tool_templates
from ..errors import TuneboardError
from ..hub import BUILTIN_PREFIX
from . import lookup
from .common import Ctx, dataset_choices, error_text, in_every_language, ok_text, relpath
from .locales import normalize, t

FORMATTINGS = ("alpaca", "sharegpt", "openai")
SUFFIXES = [".json", ".jsonl", ".csv", ".parquet"]
_MARK = re.compile(r"\[\[(.*?)\]\]", re.S)
_HEADER = re.compile(r"(--- record [^\n]*)")
LISTED = 200  # rows of the records table


def tokenizer_for(ctx: Ctx, model: str, template: str):
    """The top bar model's tokenizer and template without loading torch; None for a hub model not cached."""
    from ..config import Config
    from ..data.templates.resolve import load_template
    from ..hub import download, use_modelscope
    from ..model.load import light_tokenizer, resolve_dir

    ref = lookup.model_ref(ctx.ws, model)
    if ref.startswith(BUILTIN_PREFIX) or (ctx.ws.root / ref).is_dir():
        model_dir = resolve_dir(ref if ref.startswith(BUILTIN_PREFIX) else str(ctx.ws.root / ref), Config())
    elif use_modelscope():
        return None
    else:
        try:
            model_dir = Path(download(ref, local_only=True))
        except Exception:
            return None
    tok = light_tokenizer(model_dir)
    return tok, load_template(template, tok, model_dir)


def check_tables(lang: str, report: dict[str, Any] | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The summary and the records to look at (problems, duplicates, empty replies); None: both empty."""
    columns = [t(lang, "col.item"), t(lang, "col.value")], [t(lang, "col.problem")]
    if report is None:
        return pd.DataFrame(columns=columns[0]), pd.DataFrame(columns=columns[1])
    rows = [
        (t(lang, "check.formatting"), report["formatting"]),
        (t(lang, "check.records"), report["records"]),
        (t(lang, "check.valid"), report["valid"]),
        (t(lang, "check.problems"), len(report["problems"])),
        (t(lang, "check.duplicates"), report["duplicates"]),
        (t(lang, "check.empty_outputs"), report["empty_outputs"]),
        (t(lang, "check.with_system"), report["with_system"]),
        (t(lang, "check.multi_turn"), report["multi_turn"]),
    ]
    if "tokens" in report:
        tk = report["tokens"]
        rows += [
            (t(lang, "check.tokens"), f"p50 {tk['p50']} · p90 {tk['p90']} · max {tk['max']}"),
            (t(lang, "check.over_cutoff", cutoff=tk["cutoff_len"]), tk["over_cutoff"]),
        ]
    if report["unmapped_fields"]:
        fields = ", ".join(f"{k} ({n})" for k, n in report["unmapped_fields"].items())
        rows.append((t(lang, "check.unmapped"), fields))
    if report.get("with_tools"):
        rendered = {None: "unknown", True: "yes", False: "no"}[report.get("tools_rendered")]
        note = t(lang, f"check.tools.{rendered}", names=", ".join(tool_templates()))
        rows.append((t(lang, "check.with_tools"), f"{report['with_tools']} · {note}"))
    summary = pd.DataFrame([(a, str(b)) for a, b in rows], columns=columns[0])
    named = [
        *report["problems"][:LISTED],
        *(t(lang, "check.row.duplicate", **d) for d in report.get("duplicate_records", [])[:LISTED]),
        *(t(lang, "check.row.empty", **e) for e in report.get("empty_records", [])[:LISTED]),
    ]
    return summary, pd.DataFrame([(p,) for p in named], columns=columns[1])


def check_message(lang: str, file: str, report: dict[str, Any], note: str) -> str:
    """❌ with invalid records, ⚠️ with duplicates or empty replies, ✅ only when there is neither."""
    if report["problems"]:
        icon, key = "❌ ", "data.check_bad"
    elif report["duplicates"] or report["empty_outputs"]:
        icon, key = "⚠️ ", "data.check_warn"
    else:
        icon, key = "✅ ", "data.check_ok"
    values = dict(n=len(report["problems"]), dupes=report["duplicates"], empty=report["empty_outputs"])
    return icon + html.escape(t(lang, key, file=file, **values) + note)


def shown(lang: str, seen: dict[str, Any] | None) -> tuple[Any, Any, Any]:
    """The file section's message and check tables again, in `lang` (after the language switch)."""
    if not seen:
        return gr.skip(), gr.skip(), gr.skip()
    msg = seen["msg"][normalize(lang)]
    if not seen["tables"]:
        return msg, gr.skip(), gr.skip()
    return (msg, *check_tables(lang, seen["report"]))


def registry_table(ctx: Ctx, lang: str, dataset_dir: str) -> pd.DataFrame:
    cols = [t(lang, "col.name"), t(lang, "col.source"), t(lang, "col.formatting"), t(lang, "col.records")]
    try:
        rows = lookup.datasets(ctx.ws, dataset_dir)
    except TuneboardError:
        rows = []
    data = [
        (r["name"], r["source"], r["formatting"], "?" if r["records"] is None else r["records"]) for r in rows
    ]
    return pd.DataFrame(data, columns=cols)


def preview_html(text: str) -> str:
    """tools.preview's text as HTML: record headers in bold, trained spans ([[...]]) highlighted."""
    out = []
    for part in _HEADER.split(text):
        if _HEADER.fullmatch(part):
            out.append(f"<b>{html.escape(part.replace(' (between [[ and ]])', ''))}</b>")
        else:
            out.append(
                _MARK.sub(lambda m: f'<mark class="tb-trained">{m.group(1)}</mark>', html.escape(part))
            )
    return f'<pre class="tb-preview">{"".join(out)}</pre>'


def build(ctx: Ctx) -> dict[str, Any]:
    ui, ws = ctx.ui, ctx.ws
    with ui.tab("tab.data", id="data", elem_id="tab-data") as tab:
        ui.md("data.intro")
        ctx.dataset_dir = ui.box(
            gr.Textbox, "data.dataset_dir", info=True, value="data", elem_id="dataset-dir"
        )
        with ui.accordion("data.identity", open=True):
            with gr.Row():
                name = ui.box(gr.Textbox, "data.identity_name", placeholder=True, elem_id="identity-name")
                author = ui.box(
                    gr.Textbox, "data.identity_author", placeholder=True, elem_id="identity-author"
                )
                id_file = ui.box(
                    gr.Textbox, "data.identity_file", value="data/identity.json", elem_id="identity-file"
                )
            fill = ui.button("data.identity_fill", variant="primary", elem_id="identity-fill")
            id_msg = gr.Markdown(elem_id="identity-msg")
        with ui.accordion("data.file", open=True):
            with gr.Row():
                upload = ui.box(gr.File, "data.upload", file_types=SUFFIXES, height=120, elem_id="upload")
                with gr.Column():
                    path = ui.box(gr.Textbox, "data.path", info=True, elem_id="data-path")
                    cutoff = ui.box(gr.Number, "data.cutoff", value=2048, precision=0)
                    check = ui.button("data.check", elem_id="data-check")
            with gr.Row(equal_height=True):
                val_size = ui.box(gr.Number, "data.val_size", info=True, value=0.1, minimum=0)
                seed = ui.box(gr.Number, "data.seed", value=42, precision=0)
                reg_splits = ui.box(gr.Checkbox, "data.register_splits", value=True)
                split = ui.button("data.split", elem_id="data-split")
            with gr.Row(equal_height=True):
                reg_name = ui.box(gr.Textbox, "data.reg_name", elem_id="reg-name")
                formatting = ui.box(
                    gr.Dropdown, "data.formatting", choices=["auto", *FORMATTINGS], value="auto"
                )
                force = ui.box(gr.Checkbox, "data.force", value=False, elem_id="reg-force")
                register = ui.button("data.register", variant="primary", elem_id="data-register")
            file_msg = gr.Markdown(elem_id="data-msg")
            seen = gr.State(None)  # what file_msg and the tables show, in every language
            with gr.Row():
                cols = [t(ui.lang, "col.item"), t(ui.lang, "col.value")]
                summary = ui.box(
                    gr.Dataframe,
                    "data.summary",
                    value=pd.DataFrame(columns=cols),
                    interactive=False,
                    elem_id="check-summary",
                )
                problems = ui.box(
                    gr.Dataframe,
                    "data.problems",
                    value=pd.DataFrame(columns=[t(ui.lang, "col.problem")]),
                    interactive=False,
                    wrap=True,
                    elem_id="check-problems",
                )
        with ui.accordion("data.registry", open=True):
            table = gr.Dataframe(
                registry_table(ctx, ui.lang, "data"), interactive=False, show_label=False, elem_id="registry"
            )
        with ui.accordion("data.preview", open=False):
            with gr.Row(equal_height=True):
                choices = dataset_choices(ws, "data")
                pv_name = ui.box(
                    gr.Dropdown, "data.preview_dataset", choices=choices, elem_id="preview-dataset"
                )
                pv_n = ui.box(gr.Number, "data.preview_n", value=2, precision=0, minimum=1, maximum=20)
                pv_btn = ui.button("data.preview_run", elem_id="preview-run")
            ui.md("data.preview_note")
            pv_out = gr.HTML(elem_id="preview-out")
    ctx.pickers.append((pv_name, "any"))

    def do_fill(lang: str, n: str, a: str, file: str) -> str:
        try:
            out = tools.identity(n, a, ws.resolve(file))
        except Exception as exc:
            return error_text(lang, exc)
        return ok_text(t(lang, "data.identity_done", name=n, author=a, file=relpath(ws, out)))

    def said(render: Any, report: Any = False) -> dict[str, Any]:
        """What the file section shows, kept so that the language switch can show it again; report: the
        check report (None: an empty table), False: the tables are not this message's."""
        return {"msg": in_every_language(render), "tables": report is not False, "report": report or None}

    def do_upload(lang: str, tmp: str | None, dataset_dir: str, overwrite: bool):
        if not tmp:
            return gr.update(), gr.update(), gr.skip(), gr.skip()
        try:
            target_dir = ws.resolve(dataset_dir)
            target = ws.resolve(target_dir / Path(tmp).name)
            if target.exists() and not overwrite:
                raise TuneboardError(t(lang, "data.exists", file=relpath(ws, target)))
            target_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(tmp, target)
        except Exception as exc:
            seen = said(lambda lg, e=exc: error_text(lg, e))
            return gr.update(), gr.update(), seen["msg"][normalize(lang)], seen
        rel = relpath(ws, target)
        seen = said(lambda lg: ok_text(t(lg, "data.uploaded", file=rel)))
        return rel, target.stem, seen["msg"][normalize(lang)], seen

    def do_check(lang: str, file: str, cut: float, model: str, template: str):
        try:
            spec = spec_for_path(ws.resolve(file))
            light, why = None, ""
            try:
                light = tokenizer_for(ctx, model, template)
            except TuneboardError as exc:
                why = str(exc)
            if light is None and not why:
                why = model
            tok, tpl = light or (None, None)
            report = tools.check(spec, tok, tpl, int(cut or 2048))
        except Exception as exc:
            seen = said(lambda lg, e=exc: error_text(lg, e), None)
        else:
            name = relpath(ws, spec.path)
            seen = said(
                lambda lg: check_message(
                    lg, name, report, " " + t(lg, "data.no_tokens", why=why) if why else ""
                ),
                report,
            )
        return (*shown(lang, seen), seen)

    def do_split(lang: str, file: str, val: float, sd: float, reg: bool, dataset_dir: str, overwrite: bool):
        try:
            base = ws.resolve(dataset_dir) if reg else None  # both registered in one write, or neither
            result = tools.split(ws.resolve(file), float(val or 0.1), int(sd or 42), bool(overwrite), base)
        except Exception as exc:
            seen = said(lambda lg, e=exc: error_text(lg, e))
            return seen["msg"][normalize(lang)], seen
        seen = said(lambda lg: ok_text(split_text(lg, result, reg)))
        return seen["msg"][normalize(lang)], seen

    def split_text(lang: str, result: tools.Split, reg: bool) -> str:
        tr, te = result.train, result.test
        values = dict(
            train=relpath(ws, tr), test=relpath(ws, te), n_train=result.n_train, n_test=result.n_test
        )
        text = t(lang, "data.split_done", **values)
        if result.repeated:
            shown_ = ", ".join(map(str, result.repeated[:20])) + (", …" if len(result.repeated) > 20 else "")
            text += " " + t(lang, "data.split_repeated", n=len(result.repeated), records=shown_)
        if reg:
            text += " " + t(lang, "data.registered_both", train=tr.stem, test=te.stem)
        return text

    def do_register(lang: str, file: str, reg: str, fmt: str, dataset_dir: str, overwrite: bool):
        try:
            if not (reg or "").strip():
                raise TuneboardError(t(lang, "data.need_name"))
            entry = tools.add(
                reg.strip(),
                ws.resolve(file),
                ws.resolve(dataset_dir),
                None if fmt == "auto" else fmt,
                bool(overwrite),
            )
        except Exception as exc:
            seen = said(lambda lg, e=exc: error_text(lg, e))
        else:
            seen = said(lambda lg: ok_text(t(lg, "data.registered", name=reg.strip(), entry=entry)))
        return seen["msg"][normalize(lang)], seen

    def do_preview(
        lang: str, dataset: str | None, n: float, cut: float, dataset_dir: str, model: str, template: str
    ):
        try:
            if not dataset:
                raise TuneboardError(t(lang, "data.pick_dataset"))
            light = tokenizer_for(ctx, model, template)
            if light is None:
                raise TuneboardError(t(lang, "data.no_tokens", why=model))
            spec = tools.resolve_one(dataset, ws.resolve(dataset_dir))
            if spec.load_from == "file":
                ws.resolve(spec.path)
            text = tools.preview(spec, light[0], light[1], int(n or 2), int(cut or 2048))
        except Exception as exc:
            return f"<p>{error_text(lang, exc)}</p>"
        return preview_html(text)

    lang, model, template = ctx.lang, ctx.top[0], ctx.top[4]
    fill.click(do_fill, [lang, name, author, id_file], id_msg)
    upload.upload(do_upload, [lang, upload, ctx.dataset_dir, force], [path, reg_name, file_msg, seen])
    path.change(lambda p: Path(p).stem if p else "", path, reg_name, show_progress="hidden")
    check.click(do_check, [lang, path, cutoff, model, template], [file_msg, summary, problems, seen])
    lang.change(shown, [lang, seen], [file_msg, summary, problems], show_progress="hidden")
    pv_btn.click(do_preview, [lang, pv_name, pv_n, cutoff, ctx.dataset_dir, model, template], pv_out)
    changed = [
        split.click(
            do_split, [lang, path, val_size, seed, reg_splits, ctx.dataset_dir, force], [file_msg, seen]
        ),
        register.click(
            do_register, [lang, path, reg_name, formatting, ctx.dataset_dir, force], [file_msg, seen]
        ),
        ctx.dataset_dir.submit(lambda: None, None, None),
    ]
    return {"tab": tab, "changed": changed, "table": table}
