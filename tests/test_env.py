"""Hardware report: content, the no-GPU verdict, CUDA_VISIBLE_DEVICES, and speed without importing torch."""

import os
import subprocess
import sys
import time

import pytest

from tuneboard.hardware import report as env

NO_DRIVER = env.nvidia_driver() is None and not os.path.exists("/dev/kfd")


def test_report_has_every_section():
    d = env.report()
    assert set(d) >= {"python", "cpu", "memory", "disk", "gpus", "cuda", "packages", "optional"}
    assert d["cpu"]["cores"] >= 1 and d["memory"]["total"] > 0 and d["disk"]["free"] > 0
    assert set(d["packages"]) == set(env.CORE_PACKAGES) and set(d["optional"]) == set(env.OPTIONAL_PACKAGES)
    assert d["packages"]["transformers"]  # installed in the project venv


def test_versions_come_from_metadata():
    assert env.package_version("pytest")
    assert env.package_version("no-such-package-tuneboard-test") is None
    if env.package_version("torch"):
        assert "cuda" in env.torch_build()


@pytest.mark.skipif(not NO_DRIVER, reason="this machine has a GPU driver")
def test_no_gpu_is_said_plainly():
    d = env.report()
    assert d["gpus"] == []
    text = env.format_report(d)
    assert "No CUDA GPU found: training will run on the CPU" in text


def test_format_report_with_gpus():
    d = env.report()
    d["gpus"] = [
        {
            "index": 0,
            "name": "NVIDIA A100-SXM4-80GB",
            "memory_total": 80 * env.GIB,
            "memory_used": 2 * env.GIB,
        }
    ]
    d["cuda"].update(driver="550.54.15", driver_cuda="12.4", torch_cuda="12.4", torch_hip=None)
    text = env.format_report(d)
    assert "GPU 0" in text and "A100" in text and "80.0 GiB" in text and "driver 550.54.15" in text
    assert "No CUDA GPU" not in text
    d["cuda"]["torch_cuda"] = None
    if d["packages"]["torch"]:
        assert "CPU build" in env.format_report(d)


@pytest.mark.parametrize(
    "spec, expected",
    [(None, [0, 1, 2]), ("2,0", [2, 0]), ("", []), ("-1", []), ("GPU-bbb", [1]), ("1,7", [1])],
)
def test_cuda_visible_devices(monkeypatch, spec, expected):
    if spec is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", spec)
    assert env._visible([0, 1, 2], ["GPU-aaa", "GPU-bbb", "GPU-ccc"]) == expected


def test_modules_do_not_import_torch():
    code = (
        "import sys, tuneboard.hardware.report, tuneboard.hardware.estimate; "
        "print('torch' in sys.modules or 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.skipif(not NO_DRIVER, reason="this machine has a GPU driver: torch.cuda may be consulted")
def test_report_is_fast_and_skips_torch_without_gpu():
    code = (
        "import sys, time; t = time.perf_counter(); from tuneboard.hardware import report as env; "
        "text = env.format_report(env.report()); "
        "print(round(time.perf_counter() - t, 3), 'torch' in sys.modules)"
    )
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    inner, torch_loaded = out.stdout.split()
    assert torch_loaded == "False"
    assert wall < 2.0, f"report took {wall:.2f}s (in process {inner}s)"


def test_cpu_bf16_from_cpuinfo_flags():
    amd = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2 fma\n\nprocessor\t: 1\nflags\t: fpu\n"
    assert env.parse_cpuinfo(amd) == ("AMD EPYC", False)
    sapphire = "model name : Intel Xeon Platinum 8480+\nflags : avx512f avx512_bf16 amx_bf16 amx_tile\n"
    assert env.parse_cpuinfo(sapphire) == ("Intel Xeon Platinum 8480+", True)
    graviton = "processor : 0\nFeatures : fp asimd sve bf16 i8mm\n"
    assert env.parse_cpuinfo(graviton) == (None, True)
    d = env.report()
    d["cpu"]["bf16"] = False
    assert "no native bf16" in env.format_report(d)
