"""Checkpoints that survive a kill at any instant and say when they are damaged.

A checkpoint is a dict of tensors and plain Python values (loads with
``torch.load(..., weights_only=True)``) carrying a SHA-256 of its own content, because
``torch.load`` reads a file with a flipped byte without complaint. Writes go to a
temporary file that is flushed, fsynced and renamed over the old one; the old one is
kept as ``<name>.prev.pt``; the folder is fsynced. Loading takes the newest checkpoint
that verifies, and names each one it skips with the reason.
"""
from __future__ import annotations

import hashlib
import io
import os
import random
import shutil
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .files import atomic_write
from .runs import explain_os_error

CHECKSUM_KEY = "sha256"


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or none could be read; the message says why."""


def _digest(obj: Any, h) -> None:
    """Feed a nested structure of tensors and plain values into a hash, in order."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy() if t.numel() else b""))
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}".encode())
        for k, v in obj.items():
            h.update(repr(k).encode())
            _digest(v, h)
    elif isinstance(obj, (list, tuple)):
        h.update(f"L{len(obj)}".encode())
        for v in obj:
            _digest(v, h)
    else:
        h.update(f"V{obj!r}".encode())


def content_hash(state: dict) -> str:
    h = hashlib.sha256()
    _digest({k: v for k, v in state.items() if k != CHECKSUM_KEY}, h)
    return h.hexdigest()


def to_host(obj: Any) -> Any:
    """A copy of a nested state on the CPU, detached from training (safe to write later)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: to_host(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_host(v) for v in obj)
    return obj


def prev_path(path: Path) -> Path:
    return path.with_name(path.stem + ".prev" + path.suffix)


def is_drive_path(path: Path) -> bool:
    return str(Path(path).resolve()).startswith("/content/drive")


def save_checkpoint(state: dict, path: str | os.PathLike, *, keep_previous: bool = True,
                    stage_locally: bool | None = None) -> None:
    """Write ``state`` (with its checksum) atomically to ``path``.

    ``keep_previous`` renames the file being replaced to ``<stem>.prev<suffix>``. On a
    Google Drive path the bytes are first written to local disk and then copied, so a
    slow or dropped Drive write never leaves training holding a half-written buffer.
    On failure (disk full, I/O error) the previous checkpoint is untouched and a
    ``CheckpointError`` says what happened.
    """
    path = Path(path)
    state = dict(state)
    state[CHECKSUM_KEY] = content_hash(state)
    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getbuffer()
    stage = is_drive_path(path) if stage_locally is None else stage_locally
    try:
        with atomic_write(path, keep_previous=prev_path(path) if keep_previous else None) as f:
            if stage:  # local disk first, then one sequential copy onto the Drive mount
                with tempfile.TemporaryFile() as staged:
                    staged.write(data)
                    staged.seek(0)
                    shutil.copyfileobj(staged, f)
            else:
                f.write(data)
    except OSError as e:
        reason = explain_os_error(e)
        previous = path if path.exists() else prev_path(path)
        kept = (f"The previous checkpoint {previous} is intact." if previous.exists()
                else "No earlier checkpoint exists.")
        raise CheckpointError(f"could not write checkpoint {path}: {reason} ({e}). {kept} "
                              "Fix the cause and run the same command again to resume.") from e


def read_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load and verify one checkpoint; raise ``CheckpointError`` with the reason if it
    is missing, unreadable, or its content does not match its checksum."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path} cannot be read ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200]})") from e
    if not isinstance(state, dict) or CHECKSUM_KEY not in state:
        raise CheckpointError(f"{path} is not a colabkit checkpoint (no checksum)")
    if content_hash(state) != state[CHECKSUM_KEY]:
        raise CheckpointError(f"{path} fails its checksum: its content is damaged")
    return state


def load_latest(path: str | os.PathLike, map_location="cpu") -> dict | None:
    """``path`` if it verifies, else its ``.prev`` sibling (always the older of the two:
    it is the file ``path`` replaced); None if neither exists. A damaged one is reported
    by a warning naming it, and skipped. Only what is needed is read."""
    path = Path(path)
    candidates = [p for p in (path, prev_path(path)) if p.exists()]
    bad = []
    for p in candidates:
        try:
            return read_checkpoint(p, map_location)
        except CheckpointError as e:
            bad.append(str(e))
            warnings.warn(f"skipping checkpoint: {e}", stacklevel=2)
    if bad:
        raise CheckpointError("no readable checkpoint: " + "; ".join(bad) + ". Move the run "
                              "folder aside to start afresh.")
    return None


# ------------------------------------------------------------ RNG states ----

def rng_state() -> dict:
    """Python, NumPy, torch (and CUDA) RNG states as tensors and plain values."""
    np_state = np.random.get_state()
    state = {
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------- background writer ----

class CheckpointWriter:
    """Writes checkpoints in order, on a background thread when ``background=True``, so
    training goes on while the bytes reach the disk. ``then`` callbacks (writing
    metrics.csv) run after the checkpoint commits. ``wait()`` re-raises a failed write."""

    def __init__(self, background: bool = False):
        self.background = background
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, state: dict, path: Path, then: Callable[[], None] | None = None,
               keep_previous: bool = True) -> None:
        self.wait()

        def job():
            save_checkpoint(state, path, keep_previous=keep_previous)
            if then is not None:
                then()

        if not self.background:
            job()
            return

        def run():
            try:
                job()
            except BaseException as e:  # surfaced by wait()
                self._error = e

        self._thread = threading.Thread(target=run, name="colabkit-checkpoint", daemon=False)
        self._thread.start()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            err, self._error = self._error, None
            raise err
