"""`python -m tuneboard.demo DIR` starts by deleting DIR: only a previous demo run (or, with --force, any
folder but the current one) is deleted; a user's folder is refused and kept."""

from __future__ import annotations

import pytest

from tuneboard import demo


@pytest.fixture
def no_delete(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError(f"the demo deleted {a[0]}")

    monkeypatch.setattr(demo.shutil, "rmtree", refuse)


@pytest.mark.parametrize("names", [["notes.txt"], ["data/"], ["data/", "train.yaml", "thesis.docx"]])
def test_a_users_folder_is_refused_and_kept(tmp_path, capsys, no_delete, names):
    root = tmp_path / "mine"
    root.mkdir()
    for n in names:
        (root / n.rstrip("/")).mkdir() if n.endswith("/") else (root / n).write_text("mine")
    assert demo.main(str(root)) == 1
    assert "is not empty and not a previous demo run" in capsys.readouterr().err
    assert sorted(p.name for p in root.iterdir()) == sorted(n.rstrip("/") for n in names)


def test_a_previous_run_may_be_replaced(tmp_path):
    marked = tmp_path / "run"
    (marked / "saves").mkdir(parents=True)
    (marked / demo.MARKER).write_text("")
    assert demo.refusal(marked) is None
    older = tmp_path / "older"  # a run from before the marker: the demo's own train.yaml and folders
    (older / "data").mkdir(parents=True)
    (older / "train.yaml").write_text(demo.TRAIN_YAML.format(out=older))
    assert demo.refusal(older) is None
    assert demo.refusal(tmp_path / "new") is None
    (tmp_path / "empty").mkdir()
    assert demo.refusal(tmp_path / "empty") is None


def test_force_allows_a_folder_but_never_the_current_one(tmp_path, monkeypatch, no_delete):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    assert demo.refusal(tmp_path / "mine", force=True) is None
    monkeypatch.chdir(tmp_path / "mine")
    for where in (".", "..", str(tmp_path)):
        assert "is the current directory" in demo.refusal(demo.Path(where), force=True)
        assert demo.main(where, force=True) == 1
    (tmp_path / "file").write_text("x")
    assert "is not a directory" in demo.refusal(tmp_path / "file", force=True)
