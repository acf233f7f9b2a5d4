"""Components built with their locale strings, and relabelled in place when the language changes.

Interface layer helper for the gradio tabs: a tab asks `ui.box(gr.Textbox, "train.lr")` instead of
writing a label, and the language switch returns one update per recorded component.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from ..config import key_help
from .locales import DEFAULT, t, table


class Texts:
    def __init__(self, lang: str) -> None:
        self.lang = lang
        self.items: list[tuple[Any, dict[str, str], dict[str, Any]]] = []
        # locale key of a control -> the config key it sets, whose help (English) is the control's info
        # where the locale has no `<key>.info` of its own; a tab adds its controls
        self.settings: dict[str, str] = {}

    def add(self, component: Any, values: dict[str, Any] | None = None, **props: str) -> Any:
        """Record `component`; props map a property (label, info, value, placeholder) to a locale key,
        whose {placeholders} are filled from `values`."""
        self.items.append((component, props, values or {}))
        return component

    def box(self, cls: Any, key: str, *, info: bool = False, placeholder: bool = False, **kw: Any) -> Any:
        props = {"label": key}
        setting = self.settings.get(key)
        if info or (setting and f"{key}.info" in table(DEFAULT)):
            props["info"] = f"{key}.info"
        elif setting:
            kw["info"] = key_help(setting)
        if placeholder:
            props["placeholder"] = f"{key}.placeholder"
        for prop, k in props.items():
            kw[prop] = t(self.lang, k)
        return self.add(cls(**kw), **props)

    def button(self, key: str, **kw: Any) -> gr.Button:
        return self.add(gr.Button(t(self.lang, key), **kw), value=key)

    def md(self, key: str, values: dict[str, Any] | None = None, **kw: Any) -> gr.Markdown:
        return self.add(gr.Markdown(t(self.lang, key, **(values or {})), **kw), values, value=key)

    def tab(self, key: str, **kw: Any) -> gr.Tab:
        return self.add(gr.Tab(t(self.lang, key), **kw), label=key)

    def accordion(self, key: str, **kw: Any) -> gr.Accordion:
        return self.add(gr.Accordion(t(self.lang, key), **kw), label=key)

    @property
    def components(self) -> list[Any]:
        return [c for c, _, _ in self.items]

    def updates(self, lang: str) -> list[Any]:
        return [gr.update(**{p: t(lang, k, **v) for p, k in props.items()}) for _, props, v in self.items]
