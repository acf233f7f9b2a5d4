"""Workspace confinement: every path the web UI reads or writes must lie inside the workspace root.

Interface layer helper (no gradio). Symlinks are resolved before the check, so a link cannot lead out.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import TuneboardError

STATE_DIR = ".tuneboard"  # the web UI's own files in a workspace: the job's state and logs (runner.py)


class OutsideRoot(TuneboardError):
    """A path that resolves outside the workspace root."""

    def __init__(self, path: str, root: Path) -> None:
        super().__init__(f"{path}: outside the workspace {root}; the web UI only reads and writes inside it")
        self.path = path
        self.root = root


class Workspace:
    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root or os.getcwd()).expanduser().resolve()

    def resolve(self, path: str | Path) -> Path:
        """A user-given path (relative to the root, or absolute) -> its real absolute path, or OutsideRoot."""
        text = str(path).strip()
        if not text:
            raise TuneboardError("empty path")
        p = Path(text).expanduser()
        if not p.is_absolute():
            p = self.root / p
        real = p.resolve()
        if real != self.root and self.root not in real.parents:
            raise OutsideRoot(text, self.root)
        return real

    def contains(self, path: str | Path) -> bool:
        try:
            self.resolve(path)
        except TuneboardError:
            return False
        return True

    def rel(self, path: str | Path) -> str:
        """The path as written into YAML and shown to the user: relative to the root (the job's cwd)."""
        real = self.resolve(path)
        return "." if real == self.root else real.relative_to(self.root).as_posix()

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR
