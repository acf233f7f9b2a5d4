"""The bad-input catalog (tests/bad_inputs/): for every broken config, registry or dataset, `tuneboard train`
exits non-zero with one message naming the problem and where it is, prints no traceback and writes nothing.

Each case runs the real CLI in a subprocess, in a temporary copy of the case laid over `_data/`; the cases run
a few at a time (most fail in under a second, before torch is imported)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

CATALOG = Path(__file__).parent / "bad_inputs"
CASES = sorted(p.name for p in CATALOG.iterdir() if p.is_dir() and not p.name.startswith("_"))
# found only after torch is imported (transformers' names, the tokenizer): started first, run beside the others
AFTER_TORCH = ["cutoff_len_leaves_nothing", "unknown_optimizer", "unknown_scheduler"]


def lay_over(src: Path, dst: Path) -> None:
    """Copy the case's files over the common data; a directory replaces a file of the same name and back."""
    for item in src.iterdir():
        target = dst / item.name
        if item.is_dir() and not item.is_symlink():
            if target.exists() and not target.is_dir():
                target.unlink()
            target.mkdir(exist_ok=True)
            lay_over(item, target)
        else:
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            shutil.copy2(item, target, follow_symlinks=False)


def listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def run_case(name: str, root: Path) -> dict:
    work = root / name
    shutil.copytree(CATALOG / "_data", work / "data")
    lay_over(CATALOG / name, work)
    (work / "expect.txt").unlink()
    before = listing(work)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(
        [sys.executable, "-m", "tuneboard", "train", "config.yaml"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return {
        "returncode": proc.returncode,
        "output": proc.stdout + proc.stderr,
        "created": sorted(listing(work) - before),
    }


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, dict]:
    root = tmp_path_factory.mktemp("bad_inputs")
    with ThreadPoolExecutor(max_workers=4) as pool:
        order = [n for n in AFTER_TORCH if n in CASES] + [n for n in CASES if n not in AFTER_TORCH]
        futures = {name: pool.submit(run_case, name, root) for name in order}
    return {name: f.result() for name, f in futures.items()}


def test_the_catalog_is_large_enough():
    assert len(CASES) >= 30, CASES


@pytest.mark.parametrize("name", CASES)
def test_bad_input_gives_one_clear_error(results, name):
    r = results[name]
    out = r["output"]
    expected = [line for line in (CATALOG / name / "expect.txt").read_text().splitlines() if line.strip()]
    errors = [line for line in out.splitlines() if line.startswith("error: ")]
    assert r["returncode"] != 0, out
    assert "Traceback" not in out, out
    assert "--debug" not in out, f"an untranslated exception reached the user:\n{out}"
    assert len(errors) == 1, out
    for text in expected:
        assert text in errors[0], f"{text!r} not in {errors[0]!r}"
    assert not r["created"], f"created {r['created']}"
