"""Atomic file and directory writes: a reader never finds half a result where a whole one is expected.

Lowest layer (no torch). Every writer of a user-visible file goes through here.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import TuneboardError

# errors that mean "this place cannot take the write", whatever library raised them
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}
LOW_SPACE = 1 << 20  # less free space than this after a failed write: the disk is full


def _fail(path: Path, exc: OSError) -> TuneboardError:
    return TuneboardError(f"{path}: cannot write ({exc.strerror or exc}); the previous state is kept")


def nearest_existing(path: str | Path) -> Path:
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def unwritable_reason(path: str | Path) -> str | None:
    """Why nothing can be written at `path` now (read-only file system, no permission, disk full), or None."""
    place = nearest_existing(path)
    try:
        st = os.statvfs(place)
    except OSError:
        return None
    if st.f_flag & os.ST_RDONLY:
        return "read-only file system"
    if not os.access(place, os.W_OK):
        return "permission denied"
    free = (st.f_bfree if os.geteuid() == 0 else st.f_bavail) * st.f_frsize
    if free < LOW_SPACE:
        return f"no space left on device ({free // 1024} KiB free)"
    return None


def write_error(
    path: str | Path, exc: BaseException, kept: str = "the previous state is kept"
) -> TuneboardError | None:
    """A failed write under `path`, from any library (an OSError, torch's RuntimeError, safetensors' error),
    as one message naming the path; None when the disk is not the cause. Call it before cleaning up: a
    half-written file still holds the space that ran out."""
    if isinstance(exc, TuneboardError):
        return None  # already a message for a person
    reason = None
    if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:
        reason = exc.strerror or str(exc)
    else:  # wrapped by a library: "I/O error: No space left on device (os error 28)"
        code = re.search(r"os error (\d+)|\[Errno (\d+)\]", str(exc))
        number = int(next(g for g in code.groups() if g)) if code else None
        if number in WRITE_ERRNOS:
            reason = os.strerror(number)
    reason = reason or unwritable_reason(path)
    if reason is None:
        return None
    return TuneboardError(f"{path}: cannot write ({reason}); {kept}")


def write_text_atomic(path: str | Path, text: str, durable: bool = True) -> None:
    """Write to a temporary name in the same directory, fsync, then rename over the target.
    `durable=False` skips the fsync: still never half a file for a reader, but not kept through a crash
    (for a file rewritten many times a second)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # a read-only file system refuses even this (EROFS, not ENOENT)
            pass
        raise _fail(path, exc) from None


def write_json_atomic(path: str | Path, data: Any, indent: int | None = 2) -> None:
    write_text_atomic(path, json.dumps(data, ensure_ascii=False, indent=indent) + "\n")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def remove_stale(folder: Path, pattern: str) -> None:
    """Remove what killed writers left (`.<name>.partial-<pid>`) when that process is gone."""
    for p in Path(folder).glob(pattern) if Path(folder).is_dir() else ():
        pid = p.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)


@contextmanager
def atomic_dir(target: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory; rename it to `target` only when the block finishes.

    A crash or kill inside the block leaves `.name.partial-PID` (never a complete-looking `target`).
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise TuneboardError(f"{target}: exists and is not a directory")
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise TuneboardError(
            f"{target}: already exists and is not empty; choose another path or allow overwrite"
        )
    tmp = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        remove_stale(target.parent, f".{target.name}.partial-*")
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
    except Exception as exc:  # a full or read-only disk, whichever library was writing
        err = write_error(target, exc)
        shutil.rmtree(tmp, ignore_errors=True)
        if err is None:
            raise
        raise err from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def fsync_tree(folder: Path) -> None:
    """Flush a finished directory's files to disk before it is renamed into place (rename is atomic, the data
    behind it is not)."""
    for p in [*folder.rglob("*"), folder]:
        try:
            fd = os.open(p, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)


def replace_dir(src: Path, dst: Path) -> None:
    """Rename `src` to `dst`; an existing `dst` (the same step saved again) is moved aside first."""
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)
