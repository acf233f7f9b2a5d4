"""Where a model comes from: a local directory, the Hugging Face hub (cache first), or ModelScope.

Lowest layer with config.py (no torch). `builtin:tiny` is resolved one layer up, in model/load.py;
`download()` is the single boundary where network access happens, so tests can stand in for it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from .errors import TuneboardError

BUILTIN_PREFIX = "builtin:"


# the hub chosen for the work in this context (a web UI request); None: the USE_MODELSCOPE_HUB variable decides
_chosen: ContextVar[bool | None] = ContextVar("modelscope", default=None)


def use_modelscope() -> bool:
    chosen = _chosen.get()
    if chosen is not None:
        return chosen
    return os.environ.get("USE_MODELSCOPE_HUB", "0").strip().lower() in ("1", "true", "yes")


@contextmanager
def using(modelscope: bool) -> Iterator[None]:
    """Downloads in this context (thread, request) come from ModelScope or the Hugging Face hub. A server serves
    several users at once: a process-wide environment variable would switch the hub under another request."""
    token = _chosen.set(modelscope)
    try:
        yield
    finally:
        _chosen.reset(token)


def looks_local(name: str) -> bool:
    return (
        name.startswith(("/", ".", "~")) or os.sep in name.strip("/").split("/", 1)[-1] or Path(name).exists()
    )


def download(
    repo_id: str, revision: str = "main", cache_dir: str | None = None, local_only: bool = False
) -> str:
    """Fetch a snapshot (or find it in the cache); returns the local directory."""
    if use_modelscope():
        try:
            from modelscope import snapshot_download as ms_download
        except ImportError:
            raise TuneboardError(
                "USE_MODELSCOPE_HUB=1 is set but ModelScope is not installed: pip install modelscope"
            ) from None
        return ms_download(repo_id, revision=None if revision == "main" else revision, cache_dir=cache_dir)
    from huggingface_hub import snapshot_download

    return snapshot_download(
        repo_id,
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_only,
        allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.py", "*.jinja", "*.tiktoken"],
    )


def resolve_model(name: str, revision: str = "main", cache_dir: str | None = None) -> Path:
    """A model name or path -> a local directory holding config.json."""
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise TuneboardError(f"{name}: expected a model directory, found a file")
        if not (path / "config.json").exists() and not (path / "adapter_config.json").exists():
            raise TuneboardError(f"{name}: not a model directory (no config.json)")
        return path
    if name.startswith(("/", "./", "../", "~")):
        raise TuneboardError(f"{name}: local model directory not found")
    if name.count("/") != 1:
        raise TuneboardError(
            f"{name}: not a local directory and not a hub id (expected 'organisation/model', e.g. Qwen/Qwen2.5-7B-Instruct)"
        )
    hub = "ModelScope" if use_modelscope() else "the Hugging Face hub"
    try:
        return Path(download(name, revision, cache_dir, local_only=True))
    except TuneboardError:
        raise
    except Exception:
        pass  # not cached yet: download below
    try:
        return Path(download(name, revision, cache_dir))
    except TuneboardError:
        raise
    except Exception as exc:
        raise TuneboardError(
            f"cannot download '{name}' from {hub}: {type(exc).__name__}: {exc}. "
            "Check the name and your network, or point model_name_or_path at a local directory"
        ) from None
