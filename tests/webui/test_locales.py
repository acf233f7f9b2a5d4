"""Locale files: both languages hold the same keys and placeholders; every string the UI uses exists."""

from __future__ import annotations

import re
import string
import subprocess
import sys

import pytest

from tuneboard.webui import locales


def test_zh_and_en_have_the_same_keys():
    assert locales.missing() == {}


def test_placeholders_match_between_languages():
    en, zh = locales.table("en"), locales.table("zh")
    for key, text in en.items():
        names = {f[1] for f in string.Formatter().parse(text) if f[1]}
        assert names == {f[1] for f in string.Formatter().parse(zh[key]) if f[1]}, key


def test_lookup_fills_placeholders_and_normalizes_languages():
    assert locales.t("zh", "tab.train") == "训练"
    assert locales.t("en-US", "tab.train") == "Train"
    assert locales.t("zh-CN", "data.uploaded", file="data/x.json") == "已复制到 data/x.json"
    assert locales.normalize(None) == "en"
    with pytest.raises(KeyError):
        locales.t("en", "no.such.key")


def test_no_chinese_text_in_the_code():
    """UI strings live in the locale files; the code holds none of the Chinese ones."""
    from pathlib import Path

    src = Path(locales.__file__).parent
    han = re.compile(r"[\u4e00-\u9fff]")
    offenders = [p.name for p in src.glob("*.py") if han.search(p.read_text(encoding="utf-8"))]
    assert offenders == []


def test_every_used_key_exists_in_both_languages(tmp_path):
    """Building the app looks up every label; a missing key raises."""
    (tmp_path / "data").mkdir()
    from tuneboard.webui.app import build_app

    for lang in locales.LANGS:
        build_app(tmp_path, lang=lang)


def test_runner_paths_locales_import_no_gradio():
    code = (
        "import sys; import tuneboard.webui.runner, tuneboard.webui.paths, tuneboard.webui.locales, "
        "tuneboard.webui.jobs, tuneboard.webui.lookup; "
        "bad = [m for m in ('gradio', 'torch') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
