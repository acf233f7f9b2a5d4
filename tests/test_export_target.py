"""Where `tuneboard export` may write, decided before a model is loaded: overwrite_export_dir replaces only a
previous export, never a directory of the user's (whose other files would be deleted), nor the current one."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tuneboard.config import Config
from tuneboard.errors import TuneboardError
from tuneboard.export.workflow import check_target

HF_EXPORT = ["Modelfile", "README.md", "chat_template.jinja", "config.json", "generation_config.json",
             "model.safetensors", "tokenizer.json", "tokenizer_config.json"]  # fmt: skip
GGUF_EXPORT = ["Modelfile", "README.md", "m-f16.gguf"]


def folder(path, names):
    path.mkdir(parents=True)
    for n in names:
        (path / n).write_text("x")
    return path


def cfg(export_dir, overwrite=True):
    return Config(export_dir=str(export_dir), overwrite_export_dir=overwrite)


@pytest.mark.parametrize("names", [HF_EXPORT, GGUF_EXPORT, ["config.json"]])
def test_a_previous_export_may_be_replaced(tmp_path, names):
    target = folder(tmp_path / "m", names)
    assert check_target(cfg(target)) == target.resolve()
    with pytest.raises(TuneboardError, match="already exists; set overwrite_export_dir"):
        check_target(cfg(target, overwrite=False))


@pytest.mark.parametrize(
    ("names", "held"),
    [
        ([*HF_EXPORT, "notes.txt"], "notes.txt"),
        (["README.md", "Modelfile"], None),  # no model in it
        (["thesis.docx", "data.csv", "a.py", "b.py"], "a.py, b.py, data.csv, ..."),
        (["config.json", "src/"], "src"),
    ],
)
def test_a_directory_that_is_not_an_export_is_never_replaced(tmp_path, names, held):
    target = tmp_path / "mine"
    folder(target, [n for n in names if not n.endswith("/")])
    for n in names:
        if n.endswith("/"):
            (target / n).mkdir()
    before = sorted(os.listdir(target))
    with pytest.raises(TuneboardError, match="is not a previous export") as exc:
        check_target(cfg(target))
    if held:
        assert f"(it holds {held})" in str(exc.value)
    assert sorted(os.listdir(target)) == before


@pytest.mark.parametrize("where", [".", "..", "sub/..", "/"])
def test_the_current_directory_or_one_above_is_refused(tmp_path, monkeypatch, where):
    folder(tmp_path / "work", HF_EXPORT)
    (tmp_path / "work" / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    with pytest.raises(TuneboardError, match="is the current directory or holds it"):
        check_target(cfg(where))


def test_export_into_a_users_folder_fails_before_loading_and_keeps_it(tmp_path):
    """Through the CLI: one clear error, the folder as it was (a user's notes.txt was deleted before)."""
    target = folder(tmp_path / "mine", ["config.json", "notes.txt"])
    argv = ["export", "model_name_or_path=builtin:tiny", f"export_dir={target}", "overwrite_export_dir=true"]
    proc = subprocess.run(
        [sys.executable, "-m", "tuneboard", *argv], capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 1 and "is not a previous export (it holds notes.txt)" in proc.stderr, (
        proc.stderr
    )
    assert (target / "notes.txt").read_text() == "x"
    proc = subprocess.run(
        [sys.executable, "-m", "tuneboard", "export", "model_name_or_path=builtin:tiny", "export_dir=."],
        capture_output=True, text=True, cwd=target,
    )  # fmt: skip
    assert (
        proc.returncode == 1 and "is the current directory" in proc.stderr and "Traceback" not in proc.stderr
    )
