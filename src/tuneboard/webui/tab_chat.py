"""Chat tab: load / unload the top bar's model (+ adapter) and chat with it, streaming, with a system
prompt and generation controls.

Interface layer (gradio). Generation is ChatEngine.stream; one model is loaded per server (module level).
"""

from __future__ import annotations

import threading
from typing import Any

import gradio as gr

from ..config import from_dict
from .common import Ctx, error_text, model_settings, ok_text, with_hub
from .locales import t
from .webchat import gen_controls, gen_settings, note, to_messages


class Loaded:
    """The model the chat tab talks to, shared by every page of this server."""

    def __init__(self) -> None:
        self.engine: Any = None
        self.desc = ""
        self.lock = threading.Lock()

    def load(self, settings: dict[str, Any], hub: str) -> None:
        from ..inference import make_engine

        cfg, _ = from_dict({**settings, "do_train": False}, where="web UI")
        with self.lock, with_hub(hub):
            self.engine = None  # free the previous model first
            self.engine = make_engine(cfg)
            self.desc = " + ".join(x for x in (cfg.model_name_or_path, cfg.adapter_name_or_path) if x)

    def unload(self) -> None:
        with self.lock:
            self.engine = None
            self.desc = ""


LOADED = Loaded()
BACKENDS = ["huggingface", "vllm"]  # infer_backend: transformers' generate, or vLLM on a CUDA machine


def info_text(lang: str) -> str:
    if LOADED.engine is None:
        return t(lang, "chat.none")
    return t(lang, "chat.loaded", model=LOADED.desc)


def respond(lang: str, message: str, history: list, system: str, max_new, temperature, top_p, rep):
    """Stream the loaded model's reply into the chat; an empty reply or a failure shows as a note."""
    engine = LOADED.engine
    if engine is None:
        gr.Warning(t(lang, "chat.none"))
        yield history, message
        return
    if not (message or "").strip():
        yield history, ""
        return
    history = [*(history or []), {"role": "user", "content": message}]  # earlier notes stay in view
    messages = to_messages(history)
    history.append({"role": "assistant", "content": ""})
    yield history, ""
    try:
        for piece in engine.stream(
            messages, system=system or None, **gen_settings(max_new, temperature, top_p, rep)
        ):
            history[-1]["content"] += piece
            yield history, ""
    except Exception as exc:
        shown = history if history[-1]["content"].strip() else history[:-1]
        yield [*shown, note(lang, "chat.error", error_text(lang, exc))], ""
        return
    if not history[-1]["content"].strip():  # else an invisible bubble: the reply seems lost
        yield [*history[:-1], note(lang, "chat.empty")], ""


def build(ctx: Ctx) -> dict[str, Any]:
    ui = ctx.ui
    with ui.tab("tab.chat", id="chat", elem_id="tab-chat") as tab:
        with gr.Row():
            backend = ui.box(
                gr.Dropdown,
                "chat.backend",
                info=True,
                choices=BACKENDS,
                value=BACKENDS[0],
                elem_id="chat-backend",
            )
            load = ui.button("chat.load", variant="primary", elem_id="chat-load")
            unload = ui.button("chat.unload", elem_id="chat-unload")
        info = gr.Markdown(info_text(ui.lang), elem_id="chat-info")
        with gr.Row():
            with gr.Column(scale=3):
                bot = ui.box(gr.Chatbot, "chat.chatbot", height=420, elem_id="chatbot")
                with gr.Row(equal_height=True):
                    box = ui.box(gr.Textbox, "chat.input", placeholder=True, scale=5, elem_id="chat-input")
                    send = ui.button("chat.send", variant="primary", scale=1, elem_id="chat-send")
                with gr.Row():
                    stop = ui.button("chat.stop", variant="stop", elem_id="chat-stop")
                    clear = ui.button("chat.clear", elem_id="chat-clear")
            with gr.Column(scale=2):
                controls = gen_controls(lambda k: t(ui.lang, k), ui.add)

    def do_load(lang: str, backend: str, model, hub, ft, output, template, trust):
        try:
            settings = model_settings(ctx, model, hub, ft, output, template, trust)
            LOADED.load({**settings, "infer_backend": backend}, hub)
        except Exception as exc:
            return error_text(lang, exc)
        return ok_text(info_text(lang))

    def do_unload(lang: str) -> str:
        LOADED.unload()
        return info_text(lang)

    load.click(do_load, [ctx.lang, backend, *ctx.top], info, concurrency_limit=1)
    unload.click(do_unload, ctx.lang, info)
    args = [ctx.lang, box, bot, *controls]
    sent = [send.click(respond, args, [bot, box]), box.submit(respond, args, [bot, box])]
    stop.click(None, None, None, cancels=sent)
    clear.click(lambda: [], None, bot)
    return {"tab": tab, "info": info}
