"""webui/texts.py: a control that sets a config key shows the locale's info text where the locale has one
(Chinese and English), otherwise the key's help text from the config declaration."""

from __future__ import annotations

import gradio as gr

from tuneboard.config import KEYS, key_help
from tuneboard.webui import locales
from tuneboard.webui.tab_train import SETTINGS
from tuneboard.webui.texts import Texts


def test_train_controls_name_config_keys_and_locale_keys():
    assert set(SETTINGS.values()) <= set(KEYS)
    assert set(SETTINGS) <= set(locales.table("en"))


def test_info_from_the_locale_or_else_from_the_config_key():
    for lang in ("zh", "en"):
        ui = Texts(lang)
        ui.settings.update(SETTINGS)
        assert ui.box(gr.Number, "train.cutoff_len", value=2048).info == key_help("cutoff_len")
        assert ui.box(gr.Checkbox, "train.packing").info == key_help("packing")
        val = ui.box(gr.Number, "train.val_size", value=0.0)  # the locale has its own text
        assert val.info == locales.t(lang, "train.val_size.info")
        assert ui.updates("en")[-1]["info"] == locales.t("en", "train.val_size.info")  # relabelled
    assert Texts("en").box(gr.Number, "train.cutoff_len").info is None  # no setting named: no info
