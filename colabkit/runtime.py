"""Where we run: Colab or not, Google Drive, the GPU, and the precision that fits it.

``google.colab`` exists only inside Colab, so it is imported inside the functions that
need it, never at module top.
"""
from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from .registry import Advice, lookup, setting
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


# Timeouts handed to google.colab.drive (its defaults: 120 s for mount, 24 h for the flush).
# Every mount first asks the browser for Drive access and waits up to its timeout: with the
# tab closed nobody answers, so a remount colabkit makes by itself waits less than the
# first mount, at which the user is looking at the dialog.
MOUNT_TIMEOUT_MS = 120_000
REMOUNT_TIMEOUT_MS = 60_000
FLUSH_TIMEOUT_MS = 5 * 60_000  # a run's few files upload in well under this


class DriveError(RuntimeError):
    """Drive could not be mounted or flushed; the message says what to do. ``flushed``:
    the flush finished; ``mounted``: Drive is mounted now."""

    def __init__(self, message: str, flushed: bool = False, mounted: bool = False):
        super().__init__(message)
        self.flushed, self.mounted = flushed, mounted


def drive_mounted(mountpoint: str | os.PathLike | None = None) -> bool:
    """True while Drive is a live mount at ``mountpoint`` (default the Colab one). A
    dropped mount (ENOTCONN) and a plain folder on the VM's disk both answer False."""
    return os.path.ismount(str(mountpoint or DRIVE_MOUNTPOINT))


def mount_live(path: str | os.PathLike) -> bool:
    """False when ``path`` lies under the Colab Drive mount point while Drive is not
    mounted there: a write would land on the VM's disk, be lost with the VM, and make the
    next ``drive.mount`` refuse (the mount point must hold no files). Else True."""
    mountpoint = Path(DRIVE_MOUNTPOINT).resolve()
    p = Path(path).expanduser().resolve()
    if p != mountpoint and mountpoint not in p.parents:
        return True
    return drive_mounted(mountpoint)


def _mount_advice(mountpoint: str, e: BaseException) -> str:
    if "contain files" in str(e):
        return (f"Drive could not be mounted: {mountpoint} holds files written while Drive was "
                "not mounted (they live on this VM's disk only). Move them elsewhere, or choose "
                "Runtime → Disconnect and delete runtime, then Run all again.")
    return (f"Drive could not be mounted at {mountpoint} ({e}): run this cell again and approve "
            "Drive access in the dialog (the browser tab must be open); see "
            "research.google.com/colaboratory/faq.html#drive-timeout.")


def mount_drive(folder: str = "colabkit", mountpoint: str | None = None,
                timeout_ms: int = MOUNT_TIMEOUT_MS) -> Path:
    """Mount Google Drive and return the project folder ``MyDrive/<folder>`` (created).

    ``drive.mount`` asks the browser for Drive access and waits up to ``timeout_ms``. A
    mount that did not come up live (a stale one, Errno 107, common after a disconnect) is
    mounted again with ``force_remount=True``. Nothing is created under the mount point
    unless Drive is mounted there; failures raise ``DriveError`` (one line, what to do).
    Outside Colab, returns a local folder instead: ``$COLABKIT_HOME`` or ``./colabkit-home``.
    """
    if not in_colab():
        home = Path(os.environ.get("COLABKIT_HOME", "colabkit-home")).expanduser().resolve()
        home.mkdir(parents=True, exist_ok=True)
        print(f"Not in Colab: using the local folder {home} (set COLABKIT_HOME to change it).")
        return home
    from google.colab import drive

    mountpoint = mountpoint or DRIVE_MOUNTPOINT
    try:
        drive.mount(mountpoint, timeout_ms=timeout_ms)
        if not drive_mounted(mountpoint):
            print("Drive's mount was not live (Transport endpoint is not connected): remounting.")
            drive.mount(mountpoint, force_remount=True, timeout_ms=timeout_ms)
    except ValueError as e:
        raise DriveError(_mount_advice(mountpoint, e)) from None
    if not drive_mounted(mountpoint):
        raise DriveError(_mount_advice(mountpoint, "it is not mounted after drive.mount"))
    home = Path(mountpoint) / "MyDrive" / folder
    home.mkdir(parents=True, exist_ok=True)
    print(f"Drive mounted: runs and data go to {home}")
    return home


def flush_seconds(path: str | os.PathLike) -> float:
    """The most ``flush_drive(path)`` can take: the flush's timeout and the remount's, in
    Colab for a path under the mount point; else 0."""
    if not in_colab() or Path(DRIVE_MOUNTPOINT).resolve() not in Path(path).resolve().parents:
        return 0.0
    return (FLUSH_TIMEOUT_MS + REMOUNT_TIMEOUT_MS) / 1000


def flush_drive(path: str | os.PathLike | None = None, *, remount: bool = True) -> None:
    """Make Drive upload what was written, now.

    ``fsync`` reaches only Drive's local cache; in Colab the one call that forces the
    upload is ``drive.flush_and_unmount()``, so this calls it (waiting at most
    ``FLUSH_TIMEOUT_MS``) and (``remount=True``) mounts Drive again for the cells that
    follow (``REMOUNT_TIMEOUT_MS``: the tab may be closed). ``path``: act only if it lies
    under the Drive mount point. Elsewhere, ``os.sync()``. Raises ``DriveError`` when Drive
    is not mounted, the flush fails or the remount fails.
    """
    if hasattr(os, "sync"):
        os.sync()
    if not in_colab():
        return
    mountpoint = Path(DRIVE_MOUNTPOINT).resolve()
    if path is not None and mountpoint not in Path(path).resolve().parents:
        return
    from google.colab import drive

    if not drive_mounted(mountpoint):
        raise DriveError(f"Drive is not mounted at {mountpoint}: nothing could be flushed")
    problems = []
    try:
        drive.flush_and_unmount(timeout_ms=FLUSH_TIMEOUT_MS)
    except (ValueError, OSError) as e:
        problems.append(f"drive.flush_and_unmount failed ({e})")
    flushed = not problems
    if remount and not drive_mounted(mountpoint):
        try:
            drive.mount(str(mountpoint), timeout_ms=REMOUNT_TIMEOUT_MS)
        except (ValueError, OSError) as e:
            problems.append(f"the remount failed ({e})")
    if problems:
        raise DriveError("; ".join(problems), flushed=flushed,
                         mounted=drive_mounted(mountpoint))


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


__all__ = ["Advice", "DeviceError", "DriveError", "drive_mounted", "mount_live", "in_colab",
           "mount_drive", "flush_drive", "flush_seconds", "choose_device", "choose_precision",
           "compile_note",
           "check_gpu", "GPUInfo", "environment_record"]
