"""What a workspace holds, for the web UI's choices: a model's outputs under <root>/saves/, registered
datasets with their record counts, the template a model is known to use.

Interface layer helper (no gradio). Output layout, as LLaMA-Factory's board: saves/<model>/<finetuning>/<run>.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .. import rundir
from ..data.readers import read_file
from ..data.registry import read_registry
from ..data.templates.resolve import template_name
from ..errors import TuneboardError
from ..hub import BUILTIN_PREFIX
from .paths import Workspace

BUILTIN = "builtin:tiny"
# suggestions for the model box; any hub id or local path may be typed instead
HUB_MODELS = (
    "Qwen/Qwen2.5-0.5B-Instruct",
    "Qwen/Qwen2.5-7B-Instruct",
    "Qwen/Qwen3-8B",
    "meta-llama/Meta-Llama-3-8B-Instruct",
    "THUDM/glm-4-9b-chat",
    "google/gemma-2-9b-it",
    "mistralai/Mistral-7B-Instruct-v0.3",
)
FINISHED = ("adapter_config.json", "config.json")
_COUNTS: dict[tuple[str, float], int] = {}


def is_path(model: str) -> bool:
    """A model given as a local path (rather than builtin:tiny or a hub id 'org/name')."""
    model = model.strip()
    if model.startswith(BUILTIN_PREFIX):
        return False
    return model.startswith(("/", ".", "~")) or model.count("/") != 1


def model_ref(ws: Workspace, model: str) -> str:
    """The model as written into a config: a hub id or builtin name as is, a local path confined and relative."""
    model = (model or "").strip()
    if not model:
        raise TuneboardError("no model chosen")
    if not is_path(model) and not (ws.root / model).exists():
        return model
    path = ws.resolve(model)
    if not path.is_dir():
        raise TuneboardError(f"{model}: local model directory not found")
    return ws.rel(path)


def slug(model: str) -> str:
    model = (model or "").strip().rstrip("/")
    if is_path(model):
        model = Path(model).name
    return re.sub(r"[^\w.\-]+", "-", model).strip("-") or "model"


def saves_dir(ws: Workspace, model: str, finetuning_type: str) -> Path:
    return ws.resolve(Path("saves") / slug(model) / finetuning_type)


def list_outputs(ws: Workspace, model: str, finetuning_type: str) -> list[str]:
    """Finished runs and their checkpoints under saves/<model>/<finetuning>/, newest run first."""
    base = saves_dir(ws, model, finetuning_type)
    if not base.is_dir():
        return []
    out = []
    runs = sorted((p for p in base.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
    for run in runs:
        if any((run / f).exists() for f in FINISHED):
            out.append(run.name)
        out += [f"{run.name}/{c.name}" for c in rundir.list_checkpoints(run)]
    return out


def resumable_runs(ws: Workspace, model: str, finetuning_type: str) -> list[str]:
    """Runs under saves/<model>/<finetuning>/ that stopped before the end with a complete checkpoint, newest
    first (a finished run has nothing left to resume)."""
    base = saves_dir(ws, model, finetuning_type)
    if not base.is_dir():
        return []
    runs = [
        p
        for p in base.iterdir()
        if p.is_dir() and not rundir.is_finished(p) and rundir.complete_checkpoints(p)
    ]
    return [p.name for p in sorted(runs, key=lambda p: p.stat().st_mtime, reverse=True)]


def run_target(
    ws: Workspace, model: str, finetuning_type: str, run_name: str, resume_run: str | None
) -> tuple[Path, bool]:
    """Where a Start writes and whether it resumes: a picked run is continued in its own folder (its name
    is the run's, never the free-text one); otherwise a new run named `run_name` starts."""
    base = saves_dir(ws, model, finetuning_type)
    if resume_run:
        if resume_run not in resumable_runs(ws, model, finetuning_type):
            raise TuneboardError(f"resume: {resume_run} has no complete checkpoint under {base}")
        return base / resume_run, True
    return base / run_name.strip(), False


def model_settings(
    ws: Workspace, model: str, finetuning_type: str, output: str | None, template: str | None, trust: bool
) -> dict[str, Any]:
    """model_name_or_path / adapter_name_or_path / template / finetuning_type for a config.

    A chosen output holding a LoRA adapter becomes adapter_name_or_path; a full or freeze output (a whole
    model) becomes model_name_or_path."""
    data: dict[str, Any] = {"model_name_or_path": model_ref(ws, model)}
    if output:
        path = ws.resolve(Path("saves") / slug(model) / finetuning_type / output)
        if not path.is_dir():
            raise TuneboardError(f"{ws.rel(path)}: not found")
        if (path / "adapter_config.json").exists() and not (path / "config.json").exists():
            data["adapter_name_or_path"] = ws.rel(path)
        else:
            data["model_name_or_path"] = ws.rel(path)
    if template and template != "auto":
        data["template"] = template
    data["finetuning_type"] = finetuning_type
    if trust:
        data["trust_remote_code"] = True
    return data


def guess_template(ws: Workspace, model: str) -> str:
    """The template the CLI will use for this model (data.templates.resolve decides for both)."""
    model = (model or "").strip()
    if model == BUILTIN:
        from ..model.tiny import TEMPLATE

        return TEMPLATE
    if is_path(model) or (ws.root / model).exists():
        try:
            path = ws.resolve(model)
        except TuneboardError:
            return "auto"
        return template_name(None, path if path.is_dir() else None, path.name)
    cached = cached_hub_dir(model)
    # not downloaded yet: `auto` lets the CLI decide with the tokenizer in hand (a name hint here could differ)
    return template_name(None, cached) if cached else "auto"


def cached_hub_dir(model: str) -> Path | None:
    """The local snapshot of a hub id when it is already in the cache (nothing is downloaded), else None."""
    from .. import hub

    if model.count("/") != 1 or hub.use_modelscope():
        return None
    try:
        return Path(hub.download(model, local_only=True))
    except Exception:  # not cached, or no hub library: the CLI will fetch it
        return None


def local_models(ws: Workspace) -> list[str]:
    """Model directories under <root>/models/ (config.json inside), as relative paths."""
    base = ws.root / "models"
    if not base.is_dir():
        return []
    return sorted(f"models/{p.name}" for p in base.iterdir() if (p / "config.json").exists())


def count_records(path: Path) -> int | None:
    try:
        key = (str(path), path.stat().st_mtime)
    except OSError:
        return None
    if key not in _COUNTS:
        try:
            _COUNTS[key] = len(read_file(path))
        except TuneboardError:
            return None
    return _COUNTS[key]


def datasets(ws: Workspace, dataset_dir: str) -> list[dict[str, Any]]:
    """Entries of dataset_info.json: name, source (file or hub id), formatting, records (None: unknown)."""
    base = ws.resolve(dataset_dir or "data")
    out = []
    for name, entry in read_registry(base).items():
        if not isinstance(entry, dict):
            continue
        row: dict[str, Any] = {"name": name, "formatting": entry.get("formatting", "alpaca"), "records": None}
        if "file_name" in entry and not (entry.get("hf_hub_url") or entry.get("ms_hub_url")):
            row["source"] = str(entry["file_name"])
            path = base / str(entry["file_name"])
            if ws.contains(path):
                row["records"] = count_records(path)
        else:
            row["source"] = entry.get("hf_hub_url") or entry.get("ms_hub_url") or ""
        out.append(row)
    return out
