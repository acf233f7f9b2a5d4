"""Workspace confinement: relative and absolute paths, `..`, and symlinks that lead out are refused."""

from __future__ import annotations

import pytest

from tuneboard.webui.paths import OutsideRoot, Workspace


@pytest.fixture
def ws(tmp_path):
    root = tmp_path / "root"
    (root / "data").mkdir(parents=True)
    (root / "data" / "a.json").write_text("[]")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.json").write_text("[]")
    return Workspace(root)


def test_paths_inside_resolve_to_real_absolute_paths(ws):
    assert ws.resolve("data/a.json") == ws.root / "data" / "a.json"
    assert ws.resolve(ws.root / "data" / "a.json") == ws.root / "data" / "a.json"
    assert ws.resolve("data/new/not-yet.json") == ws.root / "data" / "new" / "not-yet.json"
    assert ws.resolve(".") == ws.root
    assert ws.rel(ws.root / "data" / "a.json") == "data/a.json"
    assert ws.rel("data/../data/a.json") == "data/a.json"


@pytest.mark.parametrize("path", ["../outside/secret.json", "data/../../outside", "/etc/passwd", "~/x.json"])
def test_paths_outside_are_refused(ws, path):
    with pytest.raises(OutsideRoot) as err:
        ws.resolve(path)
    assert "outside the workspace" in str(err.value)
    assert err.value.path == path and err.value.root == ws.root
    assert not ws.contains(path)


def test_a_symlink_that_leads_out_is_refused(ws, tmp_path):
    (ws.root / "link").symlink_to(tmp_path / "outside", target_is_directory=True)
    (ws.root / "data" / "file-link.json").symlink_to(tmp_path / "outside" / "secret.json")
    for path in ("link/secret.json", "link", "data/file-link.json", "link/not-yet/new.json"):
        with pytest.raises(OutsideRoot):
            ws.resolve(path)


def test_a_symlink_inside_the_workspace_is_followed(ws):
    (ws.root / "alias").symlink_to(ws.root / "data", target_is_directory=True)
    assert ws.resolve("alias/a.json") == ws.root / "data" / "a.json"


def test_the_root_itself_may_be_a_symlink(tmp_path):
    real = tmp_path / "real"
    (real / "data").mkdir(parents=True)
    (tmp_path / "via").symlink_to(real, target_is_directory=True)
    ws = Workspace(tmp_path / "via")
    assert ws.root == real
    assert ws.resolve("data") == real / "data"
    assert ws.resolve(tmp_path / "via" / "data") == real / "data"


def test_empty_path_is_an_error(ws):
    with pytest.raises(Exception, match="empty path"):
        ws.resolve("  ")
