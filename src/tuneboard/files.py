"""Atomic file and directory writes: a reader never finds half a result where a whole one is expected.

Lowest layer (no torch). Every writer of a user-visible file goes through here.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import TuneboardError


def _fail(path: Path, exc: OSError) -> TuneboardError:
    return TuneboardError(f"{path}: cannot write ({exc.strerror or exc}); the previous state is kept")


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write to a temporary name in the same directory, fsync, then rename over the target."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _fail(path, exc) from None


def write_json_atomic(path: str | Path, data: Any, indent: int | None = 2) -> None:
    write_text_atomic(path, json.dumps(data, ensure_ascii=False, indent=indent) + "\n")


@contextmanager
def atomic_dir(target: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory; rename it to `target` only when the block finishes.

    A crash or kill inside the block leaves `.name.partial-PID` (never a complete-looking `target`).
    """
    target = Path(target)
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise TuneboardError(
            f"{target}: already exists and is not empty; choose another path or allow overwrite"
        )
    tmp = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    except OSError as exc:
        raise _fail(target, exc) from None
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _fail(target, exc) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
