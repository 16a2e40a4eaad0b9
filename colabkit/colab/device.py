"""The device and the precision that fits it, the GPU report, and the environment a run
records (versions, CPU, GPU)."""
from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass

import torch

from ..registry import Advice, lookup, setting
from ..version import colabkit_version
from .drive import in_colab

PRECISIONS = ("auto", "fp32", "fp16", "bf16")


class DeviceError(Advice):
    """The device asked for is not there; the message says what to do."""


def choose_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else CUDA when available, else the CPU."""
    if device is not None:
        device = torch.device(device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise DeviceError(lambda cpu: "device 'cuda' was asked for but no CUDA GPU is "
                              f"visible: use {cpu}, or (in Colab) Runtime → Change runtime "
                              "type → T4 GPU", cpu=setting("device", "cpu"))
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def choose_precision(device: torch.device, precision: str = "auto") -> str:
    """fp16 (with a GradScaler) on GPUs before Ampere such as the T4 (sm_75), bf16 on
    sm_80 and newer, fp32 on the CPU; ``precision`` overrides (on the CPU too, where
    mixed precision is rarely faster but exercises the same code)."""
    lookup(PRECISIONS, precision, "precision")
    if precision != "auto":
        return precision  # fp16/bf16 autocast also runs on the CPU (slowly): used by the tests
    if device.type != "cuda":
        return "fp32"
    major, _ = torch.cuda.get_device_capability(device)
    return "bf16" if major >= 8 else "fp16"


def compile_note(device: torch.device) -> str | None:
    """One line when ``torch.compile`` is asked for on a GPU that Triton no longer
    supports (below sm_80 since Triton 3.3, triton-lang/triton#5066; Colab's T4 is sm_75)."""
    if device.type != "cuda":
        return None
    major, minor = torch.cuda.get_device_capability(device)
    if major >= 8:
        return None
    return (f"torch.compile on sm_{major}{minor}: Triton supports NVIDIA GPUs from sm_80 on, "
            "not this one officially; compiling is tried, and training goes on eagerly if it "
            "fails.")


@dataclass
class GPUInfo:
    device: str
    name: str
    memory_gb: float
    compute_capability: str
    precision: str
    torch: str
    cuda: str | None
    colab: bool


def check_gpu(allow_cpu: bool = False, verbose: bool = True) -> GPUInfo:
    """Report the GPU (name, memory, compute capability), the precision training will
    use, and the torch and CUDA versions. In Colab without a GPU this raises
    ``DeviceError`` with the steps to get one (before Drive is mounted, so the user
    approves Drive access once), unless ``allow_cpu=True``."""
    colab = in_colab()
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        dev = torch.device("cuda")
        info = GPUInfo("cuda", p.name, round(p.total_memory / 2 ** 30, 1),
                       f"{p.major}.{p.minor}", choose_precision(dev), torch.__version__,
                       torch.version.cuda, colab)
    else:
        if colab and not allow_cpu:
            raise DeviceError(
                lambda allow_cpu: "This Colab runtime has no GPU: Runtime → Change runtime "
                "type → T4 GPU → Save, then Run all. If Colab says it cannot connect to a GPU "
                f"backend due to usage limits, try again later, or {allow_cpu} for a slow "
                "trial on the CPU.",
                allow_cpu=("tick ALLOW_CPU (allow_cpu=True)", "pass --device cpu"))
        info = GPUInfo("cpu", platform.processor() or platform.machine(), 0.0, "-", "fp32",
                       torch.__version__, torch.version.cuda, colab)
    if verbose:
        if info.device == "cuda":
            print(f"GPU: {info.name}, {info.memory_gb} GiB, sm_{info.compute_capability.replace('.', '')}"
                  f" -> {info.precision}; torch {info.torch}, CUDA {info.cuda}")
        else:
            print(f"No GPU: training runs on the CPU in fp32 (slow); torch {info.torch}")
    return info


# the vector extensions that decide which CPU kernels oneDNN and ATen run (x86-64, Arm)
CPU_EXTENSIONS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni",
                  "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "asimd", "sve", "sve2")


def cpu_record(cpuinfo: str = "/proc/cpuinfo") -> dict:
    """The CPU a run's numbers come from: its model, its vector extensions, the kernels
    ATen chose (``cpu_capability``) and the variables that cap them. Floating-point results
    are bit-exact on one machine, not across machines: this says why two differ."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model name") and model in ("", platform.machine()):
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: None)()
    return {"cpu": model, "cpu_extensions": [x for x in CPU_EXTENSIONS if x in flags],
            "cpu_capability": capability,
            **{k.lower(): os.environ[k] for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")
               if os.environ.get(k)}}


def environment_record(device: torch.device | None = None) -> dict:
    """What a run ran on: saved as environment.json in each run folder."""
    version = colabkit_version()
    rec = {
        "colabkit": version["version"],
        "colabkit_commit": version["commit"],
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "colab": in_colab(),
        "cpu_count": os.cpu_count(),
        **cpu_record(),
        "device": str(device) if device is not None else None,
    }
    if device is not None and device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        rec.update(gpu=p.name, gpu_memory_gb=round(p.total_memory / 2 ** 30, 1),
                   compute_capability=f"{p.major}.{p.minor}")
    return rec
