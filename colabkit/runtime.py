"""Where we run: Colab or not, Google Drive, the GPU, and the precision that fits it.

``google.colab`` exists only inside Colab, so it is imported inside the functions that
need it, never at module top.
"""
from __future__ import annotations

import errno
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from .version import colabkit_version

DRIVE_MOUNTPOINT = "/content/drive"
PRECISIONS = ("auto", "fp32", "fp16", "bf16")


def in_colab() -> bool:
    """True inside a Google Colab runtime."""
    try:
        import google.colab  # noqa: F401
    except ImportError:
        return False
    return True


def _is_disconnected(e: BaseException) -> bool:
    return (isinstance(e, OSError) and e.errno == errno.ENOTCONN) or \
        "Transport endpoint is not connected" in str(e)


def mount_drive(folder: str = "colabkit", mountpoint: str | None = None) -> Path:
    """Mount Google Drive and return the project folder ``MyDrive/<folder>`` (created).

    A stale mount ("Transport endpoint is not connected", Errno 107, common after a
    disconnect) is remounted with ``force_remount=True``. Outside Colab, returns a local
    folder instead: ``$COLABKIT_HOME`` or ``./colabkit-home``.
    """
    if not in_colab():
        home = Path(os.environ.get("COLABKIT_HOME", "colabkit-home")).expanduser().resolve()
        home.mkdir(parents=True, exist_ok=True)
        print(f"Not in Colab: using the local folder {home} (set COLABKIT_HOME to change it).")
        return home
    from google.colab import drive

    mountpoint = mountpoint or DRIVE_MOUNTPOINT
    try:
        drive.mount(mountpoint)
        home = Path(mountpoint) / "MyDrive" / folder
        home.mkdir(parents=True, exist_ok=True)  # touches the mount: raises if it is stale
    except OSError as e:
        if not _is_disconnected(e):
            raise
        print("Drive mount was stale (Transport endpoint is not connected): remounting.")
        drive.mount(mountpoint, force_remount=True)
        home = Path(mountpoint) / "MyDrive" / folder
        home.mkdir(parents=True, exist_ok=True)
    print(f"Drive mounted: runs and data go to {home}")
    return home


def flush_drive(path: str | os.PathLike | None = None, *, remount: bool = True) -> None:
    """Make Drive upload what was written, now.

    ``fsync`` reaches only Drive's local cache; in Colab the one call that forces the
    upload is ``drive.flush_and_unmount()``, so this calls it and (``remount=True``)
    mounts Drive again for the cells that follow. ``path``: act only if it lies under the
    Drive mount point. Elsewhere, ``os.sync()``.
    """
    if hasattr(os, "sync"):
        os.sync()
    if not in_colab():
        return
    mountpoint = Path(DRIVE_MOUNTPOINT).resolve()
    if path is not None and mountpoint not in Path(path).resolve().parents:
        return
    from google.colab import drive

    drive.flush_and_unmount()
    if remount:
        drive.mount(str(mountpoint))


class DeviceError(RuntimeError):
    """The device asked for is not there; the message says what to do."""


def choose_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else CUDA when available, else the CPU."""
    if device is not None:
        device = torch.device(device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise DeviceError("device 'cuda' was asked for but no CUDA GPU is visible: "
                               "use device='cpu', or (in Colab) Runtime → Change runtime "
                               "type → T4 GPU")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def choose_precision(device: torch.device, precision: str = "auto") -> str:
    """fp16 (with a GradScaler) on GPUs before Ampere such as the T4 (sm_75), bf16 on
    sm_80 and newer, fp32 on the CPU; ``precision`` overrides (on the CPU too, where
    mixed precision is rarely faster but exercises the same code)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; known: {list(PRECISIONS)}")
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
    use, and the torch and CUDA versions. In Colab without a GPU this raises with the
    steps to get one, unless ``allow_cpu=True``."""
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
                "This Colab runtime has no GPU. Choose Runtime → Change runtime type → "
                "T4 GPU → Save, then Run all again (your run resumes where it stopped). "
                "To train on the CPU anyway (very slow), pass allow_cpu=True.")
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


__all__ = ["DeviceError", "in_colab", "mount_drive", "flush_drive", "choose_device", "choose_precision",
           "compile_note",
           "check_gpu", "GPUInfo", "environment_record"]
