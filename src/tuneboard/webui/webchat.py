"""`tuneboard webchat CONFIG`: a browser chat page over ChatEngine (streaming, system prompt, generation
controls). Its strings come from the same locale files, shown in the browser's language.

Interface layer (gradio). No generation logic here: ChatEngine.stream does it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gradio as gr

from ..config import Config
from ..inference.generation import GenerationSettings
from .locales import LANGS, normalize, t, table
from .server import launch


def text_of(content: Any) -> str:
    """A gradio message content (a string, or gradio 6's list of typed parts) -> plain text."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text") or content.get("content") or "")
    if isinstance(content, (list, tuple)):
        return "".join(text_of(part) for part in content)
    return "" if content is None else str(content)


def note(lang: str | None, key: str, detail: str = "") -> dict[str, Any]:
    """A line from tuneboard in the conversation (an empty reply, an error). Its metadata title makes
    gradio show it apart from the model's words, and to_messages leaves it out of the model's context."""
    return {
        "role": "assistant",
        "content": detail or t(lang, f"{key}.detail"),
        "metadata": {"title": t(lang, key)},
    }


def _get(m: Any, name: str) -> Any:
    return m.get(name) if isinstance(m, dict) else getattr(m, name, None)


def to_messages(history: list[Any]) -> list[dict[str, str]]:
    """Chatbot history -> OpenAI-style user/assistant messages for the model: empty, non-text and note
    entries dropped, and a user message that got no reply (empty, failed, stopped) left out, so that
    the turns still alternate as ChatEngine requires."""
    out: list[dict[str, str]] = []
    for m in history or []:
        role, text, meta = _get(m, "role"), text_of(_get(m, "content")), _get(m, "metadata")
        if role not in ("user", "assistant") or not text or (meta and _get(meta, "title")):
            continue
        if role == "user" and out and out[-1]["role"] == "user":
            out.pop()
        out.append({"role": role, "content": text})
    return out


def gen_controls(label: Any, add: Any = None, cfg: Config | None = None, render: bool = True) -> list[Any]:
    """System prompt and generation settings, starting from `cfg`'s values. `label(key)` gives a string;
    `add(component, **props)`, when given, records the component's locale keys (the language switch)."""
    cfg = cfg or Config()
    gen = GenerationSettings.from_config(cfg)
    specs = [
        (gr.Textbox, "chat.system", dict(value=cfg.default_system or "", lines=2, elem_id="chat-system")),
        (
            gr.Slider,
            "chat.max_new_tokens",
            dict(minimum=1, maximum=4096, value=gen.max_new_tokens, step=1, elem_id="max-new"),
        ),
        (
            gr.Slider,
            "chat.temperature",
            dict(
                minimum=0.0,
                maximum=1.5,
                value=gen.temperature if gen.do_sample else 0.0,
                step=0.01,
                info=True,
            ),
        ),
        (gr.Slider, "chat.top_p", dict(minimum=0.01, maximum=1.0, value=gen.top_p, step=0.01)),
        (
            gr.Slider,
            "chat.repetition_penalty",
            dict(minimum=1.0, maximum=2.0, value=gen.repetition_penalty, step=0.01),
        ),
    ]
    out = []
    for cls, key, kw in specs:
        props = {"label": key}
        if kw.pop("info", False):
            props["info"] = f"{key}.info"
        component = cls(**kw, render=render, **{p: label(k) for p, k in props.items()})
        if add is not None:
            add(component, **props)
        out.append(component)
    return out


def gen_settings(max_new: float, temperature: float, top_p: float, rep: float) -> dict[str, Any]:
    """The page's controls as a request's overrides (the engine checks them: GenerationSettings.from_config);
    the temperature decides sampling, 0 being greedy."""
    return dict(
        max_new_tokens=int(max_new),
        temperature=float(temperature),
        top_p=float(top_p),
        repetition_penalty=float(rep),
    )


def replier(engine: Any):
    """The chat page's handler: streams the reply; an empty one ends as a note in the browser's language."""

    def respond(
        message: str, history: list, system: str, max_new, temperature, top_p, rep, request: gr.Request
    ) -> Iterator[Any]:
        messages = to_messages([*history, {"role": "user", "content": message}])
        text = ""
        for piece in engine.stream(
            messages, system=system or None, **gen_settings(max_new, temperature, top_p, rep)
        ):
            text += piece
            yield text
        if not text.strip():
            yield note(normalize(request.headers.get("accept-language")), "chat.empty")

    return respond


def build(engine: Any) -> tuple[gr.Blocks, gr.I18n]:
    i18n = gr.I18n(**{lang: table(lang) for lang in LANGS})
    with gr.Blocks(title="tuneboard webchat", analytics_enabled=False) as demo:
        gr.ChatInterface(
            replier(engine),
            title=f"tuneboard · {engine.name}",
            additional_inputs=gen_controls(i18n, cfg=engine.cfg, render=False),
            additional_inputs_accordion=gr.Accordion(label=i18n("chat.settings"), open=True, render=False),
            chatbot=gr.Chatbot(label=i18n("chat.chatbot"), height=480, elem_id="webchat-bot", render=False),
            textbox=gr.Textbox(
                placeholder=i18n("chat.input.placeholder"), elem_id="webchat-input", render=False
            ),
            flagging_mode="never",
        )
    return demo, i18n


def run(cfg: Config, host: str | None = None, port: int | None = None) -> int:
    from ..inference import make_engine

    engine = make_engine(cfg)
    demo, i18n = build(engine)
    return launch(demo, host, port, "tuneboard webchat", i18n=i18n)
