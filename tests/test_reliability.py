"""Faults on the way out: a checkpoint save that never finished is never resumed from; a disk that is full or
read-only gives one error naming the path (exit 1, no traceback) and leaves the previous state as it was, for
`tuneboard train`, `export`, `data add` and `data identity`.

Full and read-only disks are real: small tmpfs mounts (root only; skipped elsewhere, with the reason)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tuneboard.config import Config
from tuneboard.errors import TuneboardError
from tuneboard.files import atomic_dir, write_error
from tuneboard.rundir import complete_checkpoints
from tuneboard.train.checkpoints import resolve_resume

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
TINY = [
    {"instruction": "What is the capital of France?", "input": "", "output": "Paris."},
    {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
    {"instruction": "Say hello.", "input": "", "output": "Hello!"},
    {"instruction": "Name a colour.", "input": "", "output": "Blue."},
]


def tuneboard(*argv: str, cwd: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tuneboard", *argv],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=cwd,
        timeout=timeout,
    )


def assert_clean_failure(proc: subprocess.CompletedProcess, *texts: str) -> str:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "Traceback" not in out and "--debug" not in out, out
    errors = [line for line in out.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, out
    for text in texts:
        assert text.lower() in errors[0].lower(), (text, errors[0])
    return errors[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---- checkpoints ----


def write_checkpoint(folder: Path, step: int, state: str | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(b"weights")
    if state is None:
        state = json.dumps({"global_step": step, "log_history": []})
    if state:
        (folder / "trainer_state.json").write_text(state)
    return folder


def test_resume_never_picks_an_incomplete_checkpoint(tmp_path):
    out = tmp_path / "run"
    write_checkpoint(out / "checkpoint-5", 5)
    write_checkpoint(out / "checkpoint-10", 10, state="")  # killed in place before trainer_state.json
    write_checkpoint(out / "checkpoint-12", 12, state='{"global_step": 1')  # trainer_state.json cut short
    write_checkpoint(out / ".checkpoint-15.partial" / "checkpoint-15", 15)  # killed before the rename
    write_checkpoint(out / "checkpoint-20.bak", 20)
    (out / "checkpoint-25").write_text("a file")
    assert complete_checkpoints(out) == [out / "checkpoint-5"]
    cfg = Config(output_dir=str(out), resume_from_checkpoint="true", dataset="x")
    assert resolve_resume(cfg) == str(out / "checkpoint-5")
    with pytest.raises(TuneboardError, match="not a complete checkpoint"):
        resolve_resume(Config(output_dir=str(out), resume_from_checkpoint=str(out / "checkpoint-12")))


def test_write_errors_name_the_path_whatever_raised_them(tmp_path):
    err = write_error(tmp_path / "out", OSError(errno.ENOSPC, "No space left on device"))
    assert err is not None and str(err).startswith(
        f"{tmp_path / 'out'}: cannot write (No space left on device)"
    )
    # a writable disk with room: the disk was not the cause
    assert write_error(tmp_path, RuntimeError("unrelated")) is None
    assert write_error(tmp_path, TuneboardError("already clear")) is None


# ---- small file systems ----


@pytest.fixture
def small_fs(tmp_path):
    """make(name, size) -> a fresh tmpfs of that size, unmounted after the test."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small tmpfs needs root (full and read-only disks are simulated that way)")
    mounted: list[Path] = []

    def make(name: str, size: str = "1m") -> Path:
        path = tmp_path / name
        path.mkdir()
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
            capture_output=True,
            text=True,
        )
        if r.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
        mounted.append(path)
        return path

    yield make
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def remount(path: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True)


def fill(folder: Path) -> None:
    """Use up every free byte of folder's file system."""
    fd = os.open(folder / ".filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


def identity_dir(folder: Path) -> Path:
    text = json.dumps(
        [{"instruction": "你是谁？", "input": "", "output": "我是 {{name}}，由 {{author}} 开发。"}]
    )
    (folder / "identity.json").write_text(text, encoding="utf-8")
    return folder / "identity.json"


@pytest.mark.parametrize("fault", ["read-only", "full"])
def test_data_identity_keeps_the_file(small_fs, fault):
    fs = small_fs("data")
    file = identity_dir(fs)
    remount(fs, "ro") if fault == "read-only" else fill(fs)
    before = snapshot(fs)
    proc = tuneboard("data", "identity", "--name", "Zeta", "--author", "Lab", "--file", str(file))
    reason = "read-only file system" if fault == "read-only" else "no space left on device"
    assert_clean_failure(proc, str(fs), reason, "previous state is kept")
    assert snapshot(fs) == before


@pytest.mark.parametrize("fault", ["read-only", "full"])
def test_data_add_keeps_the_registry(small_fs, fault):
    fs = small_fs("data")
    (fs / "dataset_info.json").write_text(json.dumps({"old": {"file_name": "old.json"}}, indent=2))
    (fs / "new.json").write_text(json.dumps(TINY))
    remount(fs, "ro") if fault == "read-only" else fill(fs)
    before = snapshot(fs)
    proc = tuneboard("data", "add", "new", str(fs / "new.json"), "--dataset-dir", str(fs))
    reason = "read-only file system" if fault == "read-only" else "no space left on device"
    assert_clean_failure(proc, str(fs / "dataset_info.json"), reason)
    assert snapshot(fs) == before


def train_config(tmp_path: Path, out: Path, **extra) -> Path:
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "tiny.json").write_text(json.dumps(TINY * 4))
    keys = dict(
        model_name_or_path="builtin:tiny",
        dataset=str(tmp_path / "data" / "tiny.json"),
        output_dir=str(out),
        cutoff_len=64,
        per_device_train_batch_size=2,
        learning_rate=1e-3,
        max_steps=6,
        save_steps=2,
        logging_steps=1,
        seed=3,
    )
    keys.update(extra)
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(keys))
    return path


def test_train_into_a_read_only_directory_stops_before_loading_anything(small_fs, tmp_path):
    fs = small_fs("ro")
    remount(fs, "ro")
    cfg = train_config(tmp_path, fs / "run")
    assert_clean_failure(tuneboard("train", str(cfg)), f"output_dir {fs / 'run'}", "read-only file system")
    assert not (fs / "run").exists()


@pytest.mark.slow
def test_train_on_a_disk_that_fills_up_keeps_its_last_checkpoint_and_resumes(small_fs, tmp_path):
    fs = small_fs("small", "3m")  # one LoRA checkpoint of builtin:tiny (~2 MB) fits, the next does not
    out = fs / "run"
    cfg = train_config(tmp_path, out, save_total_limit=1)
    error = assert_clean_failure(
        tuneboard("train", str(cfg)), "checkpoint at step 4", str(out), "no space left on device"
    )
    assert "resume_from_checkpoint=true" in error
    assert complete_checkpoints(out) == [out / "checkpoint-2"]  # the previous checkpoint, whole
    assert not list(out.glob(".*partial*")) and not (out / "all_results.json").exists()
    remount(fs, "size=64m")  # space freed: continue where it stopped
    proc = tuneboard("train", str(cfg), "resume_from_checkpoint=true")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert complete_checkpoints(out) == [out / "checkpoint-6"]  # save_total_limit rotated the others out
    assert (out / "all_results.json").exists() and (out / "adapter_model.safetensors").exists()
    assert not list(out.glob(".*partial*"))


def test_atomic_dir_keeps_the_previous_result_when_the_disk_fills(small_fs):
    fs = small_fs("exports", "256k")
    target = fs / "model"
    target.mkdir()
    (target / "config.json").write_text('{"previous": true}')
    with pytest.raises(TuneboardError, match="(?i)no space left on device") as exc:
        with atomic_dir(target, overwrite=True) as tmp:
            with open(tmp / "model.safetensors", "wb") as fh:
                fh.write(b"\0" * 2**20)
    assert str(target) in str(exc.value)
    assert snapshot(target) == {"config.json": b'{"previous": true}'}
    assert sorted(p.name for p in fs.iterdir()) == ["model"]


@pytest.mark.slow
def test_export_to_a_full_disk_keeps_the_previous_export(small_fs, tmp_path):
    fs = small_fs("exports", "4m")  # builtin:tiny in float32 is ~20 MB
    target = fs / "tiny-export"
    target.mkdir()
    (target / "config.json").write_text('{"previous": true}')
    cfg = tmp_path / "export.yaml"
    cfg.write_text(
        yaml.safe_dump(
            dict(model_name_or_path="builtin:tiny", export_dir=str(target), overwrite_export_dir=True)
        )
    )
    assert_clean_failure(tuneboard("export", str(cfg)), str(target), "no space left on device")
    assert snapshot(target) == {"config.json": b'{"previous": true}'}
    assert sorted(p.name for p in fs.iterdir()) == ["tiny-export"]  # no half-written export beside it


def test_export_to_a_read_only_disk_stops_before_loading_the_model(small_fs, tmp_path):
    fs = small_fs("exports")
    remount(fs, "ro")
    cfg = tmp_path / "export.yaml"
    cfg.write_text(yaml.safe_dump(dict(model_name_or_path="builtin:tiny", export_dir=str(fs / "out"))))
    assert_clean_failure(tuneboard("export", str(cfg)), f"export_dir {fs / 'out'}", "read-only file system")
