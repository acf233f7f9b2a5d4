"""Hardware and software report for `tuneboard env`: GPUs, CPU, RAM, disk and package versions.
Fast by design: versions come from package metadata; torch is imported only when a GPU driver exists."""

from __future__ import annotations

import importlib.metadata as metadata
import importlib.util
import os
import platform
import re
import shutil
import sys

GIB = 1024**3
CORE_PACKAGES = ("torch", "transformers", "peft", "datasets", "accelerate", "gradio")
OPTIONAL_PACKAGES = ("bitsandbytes", "deepspeed", "flash-attn", "vllm", "modelscope")
NO_GPU = (
    "No CUDA GPU found: training will run on the CPU, which is practical only for small models "
    "(builtin:tiny, up to about 0.5B parameters) and short runs."
)


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
    except Exception:  # a broken installation must not break the report
        return "?"


def torch_build() -> dict:
    """CUDA / ROCm version torch was built for, read from torch/version.py without importing torch."""
    try:
        path = metadata.distribution("torch").locate_file("torch/version.py")
        text = open(path, encoding="utf-8").read()
    except Exception:
        return {}
    out = {}
    for key in ("cuda", "hip"):
        m = re.search(rf"^{key}\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", text, re.MULTILINE)
        out[key] = m.group(1) if m else None
    return out


NATIVE_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}  # x86 AVX-512 BF16 / AMX; Arm's "bf16" feature


def parse_cpuinfo(text: str) -> tuple[str | None, bool]:
    """(model name, native bf16 instructions) from /proc/cpuinfo text."""
    model, flags = None, set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model is None:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return model, bool(flags & NATIVE_BF16_FLAGS)


def cpu_info() -> dict:
    model, bf16 = platform.processor() or platform.machine(), False
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            name, bf16 = parse_cpuinfo(f.read())
        model = name or model
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
    return {"model": model, "cores": os.cpu_count() or 1, "usable_cores": usable, "bf16": bf16}


def memory_info() -> dict:
    """RAM total and available in bytes (Linux /proc/meminfo, else sysconf)."""
    try:
        fields = {}
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                key, _, rest = line.partition(":")
                fields[key] = int(rest.split()[0]) * 1024
        return {
            "total": fields["MemTotal"],
            "available": fields.get("MemAvailable", fields.get("MemFree", 0)),
        }
    except (OSError, KeyError, ValueError, IndexError):
        pass
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        return {
            "total": page * os.sysconf("SC_PHYS_PAGES"),
            "available": page * os.sysconf("SC_AVPHYS_PAGES"),
        }
    except (AttributeError, ValueError, OSError):
        return {"total": None, "available": None}


def disk_info(path: str = ".") -> dict:
    try:
        usage = shutil.disk_usage(path)
        return {"path": os.path.abspath(path), "free": usage.free, "total": usage.total}
    except OSError:
        return {"path": os.path.abspath(path), "free": None, "total": None}


def nvidia_driver() -> str | None:
    """The NVIDIA kernel driver version, if a driver is loaded (Linux), without starting CUDA."""
    try:
        with open("/proc/driver/nvidia/version", encoding="utf-8") as f:
            m = re.search(r"Kernel Module\s+(?:for\s+\S+\s+)?([\d.]+)", f.read())
            return m.group(1) if m else "unknown"
    except OSError:
        return None


def _visible(indices: list[int], uuids: list[str]) -> list[int]:
    """Apply CUDA_VISIBLE_DEVICES (indices or UUID prefixes) to NVML's device list."""
    spec = os.environ.get("CUDA_VISIBLE_DEVICES")
    if spec is None:
        return indices
    keep = []
    for item in (s.strip() for s in spec.split(",")):
        if not item or item.startswith("-"):
            break
        if item.isdigit():
            if int(item) in indices and int(item) not in keep:
                keep.append(int(item))
        else:
            keep += [i for i, u in zip(indices, uuids, strict=False) if u.startswith(item) and i not in keep]
    return keep


def _gpus_nvml() -> tuple[list[dict], dict] | None:
    if importlib.util.find_spec("pynvml") is None:
        return None
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        return None

    def text(value) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    try:
        count = pynvml.nvmlDeviceGetCount()
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        uuids = [text(pynvml.nvmlDeviceGetUUID(h)) for h in handles]
        gpus = []
        for i in _visible(list(range(count)), uuids):
            mem = pynvml.nvmlDeviceGetMemoryInfo(handles[i])
            gpus.append(
                {
                    "index": i,
                    "name": text(pynvml.nvmlDeviceGetName(handles[i])),
                    "memory_total": int(mem.total),
                    "memory_used": int(mem.used),
                }
            )
        cuda = pynvml.nvmlSystemGetCudaDriverVersion()
        info = {
            "driver": text(pynvml.nvmlSystemGetDriverVersion()),
            "driver_cuda": f"{cuda // 1000}.{cuda % 1000 // 10}",
        }
        return gpus, info
    except Exception:
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def _gpus_torch() -> list[dict]:
    try:
        import torch

        if not torch.cuda.is_available():
            return []
        gpus = []
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            try:
                free, total = torch.cuda.mem_get_info(i)
            except Exception:
                free, total = props.total_memory, props.total_memory
            gpus.append(
                {"index": i, "name": props.name, "memory_total": int(total), "memory_used": int(total - free)}
            )
        return gpus
    except Exception:
        return []


def gpu_info() -> tuple[list[dict], dict]:
    """Visible GPUs and driver facts. NVML (pynvml) first; torch.cuda only when a driver is present."""
    driver = nvidia_driver()
    info = {"driver": driver, "driver_cuda": None, "source": None}
    rocm = os.path.exists("/dev/kfd")
    if not (driver or rocm or os.path.exists("/dev/nvidiactl") or shutil.which("nvidia-smi")):
        return [], info
    nvml = _gpus_nvml() if not rocm or driver else None
    if nvml and nvml[0]:
        info.update(nvml[1], source="nvml")
        return nvml[0], info
    if package_version("torch"):
        gpus = _gpus_torch()
        if gpus:
            info["source"] = "torch"
            return gpus, info
    return [], info


def report(path: str = ".") -> dict:
    """Everything `tuneboard env` shows, as plain data (sizes in bytes)."""
    gpus, gpu_facts = gpu_info()
    build = torch_build()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "executable": sys.executable,
        "cpu": cpu_info(),
        "memory": memory_info(),
        "disk": disk_info(path),
        "gpus": gpus,
        "cuda": {**gpu_facts, "torch_cuda": build.get("cuda"), "torch_hip": build.get("hip")},
        "packages": {name: package_version(name) for name in CORE_PACKAGES},
        "optional": {name: package_version(name) for name in OPTIONAL_PACKAGES},
        "tuneboard": package_version("tuneboard"),
    }


def _gib(n: int | None) -> str:
    return "?" if n is None else f"{n / GIB:.1f} GiB"


def format_report(d: dict) -> str:
    """The report as aligned lines for the terminal, ending with a plain verdict on the GPU."""
    cpu, mem, disk, cuda = d["cpu"], d["memory"], d["disk"], d["cuda"]
    cores = f"{cpu['cores']} cores" + (
        f", {cpu['usable_cores']} usable" if cpu["usable_cores"] != cpu["cores"] else ""
    )
    rows = [
        ("tuneboard", d.get("tuneboard") or "not installed"),
        ("Python", f"{d['python']} ({d['platform']})"),
        ("CPU", f"{cpu['model']} ({cores}; {'native bf16' if cpu.get('bf16') else 'no native bf16'})"),
        ("RAM", f"{_gib(mem['total'])} total, {_gib(mem['available'])} available"),
        ("Disk", f"{_gib(disk['free'])} free of {_gib(disk['total'])} in {disk['path']}"),
    ]
    torch_v = d["packages"].get("torch")
    build = (
        f"CUDA {cuda['torch_cuda']}"
        if cuda.get("torch_cuda")
        else f"ROCm {cuda['torch_hip']}"
        if cuda.get("torch_hip")
        else "CPU only"
    )
    if cuda.get("driver"):
        driver = f"driver {cuda['driver']}" + (
            f" (CUDA {cuda['driver_cuda']})" if cuda.get("driver_cuda") else ""
        )
        rows.append(("NVIDIA", driver))
    for g in d["gpus"]:
        rows.append(
            (f"GPU {g['index']}", f"{g['name']}, {_gib(g['memory_total'])} ({_gib(g['memory_used'])} in use)")
        )
    pkgs = ", ".join(f"{k} {v or 'MISSING'}" for k, v in d["packages"].items())
    rows.append(("Packages", pkgs + (f" [torch build: {build}]" if torch_v else "")))
    rows.append(("Optional", ", ".join(f"{k} {v or '-'}" for k, v in d["optional"].items())))
    lines = [f"{name:<10} {value}" for name, value in rows]
    if not d["gpus"]:
        lines.append(NO_GPU)
        if sys.platform == "darwin" and platform.machine() == "arm64":
            lines.append(
                "Apple silicon: torch can use the MPS backend, but bf16 and 4-bit training are limited."
            )
    elif torch_v and build == "CPU only":
        lines.append(
            f"GPU present but torch {torch_v} is a CPU build: install a CUDA build of torch to use it."
        )
    else:
        total = sum(g["memory_total"] for g in d["gpus"])
        lines.append(
            f"{len(d['gpus'])} GPU(s), {_gib(total)} in all: run `tuneboard estimate` to see what fits."
        )
    missing = [k for k, v in d["packages"].items() if not v]
    if missing:
        lines.append(f"Missing packages: {', '.join(missing)} (pip install -e .)")
    return "\n".join(lines)
