"""Checkpoints that survive a kill at any instant and say when they are damaged.

A checkpoint is a dict of tensors and plain Python values (loads with
``torch.load(..., weights_only=True)``) carrying a SHA-256 of its own content, because
``torch.load`` reads a file with a flipped byte without complaint. Writes go to a
temporary file that is flushed and fsynced, then installed (``files.install``) so that
the old version is kept as ``<name>.prev.pt`` and two complete checkpoints exist at every
instant. Loading takes the newest checkpoint that verifies, and names each one it skips
with the reason.
"""
from __future__ import annotations

import hashlib
import os
import threading
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

from .files import (atomic_write, candidates, empty_then_remove, explain_os_error, fsync_dir,
                    next_path, prev_path, promote_next)

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


def save_checkpoint(state: dict, path: str | os.PathLike, *, keep_previous: bool = True) -> None:
    """Write ``state`` (with its checksum) atomically to ``path``.

    ``keep_previous`` keeps the version being replaced as ``<stem>.prev<suffix>``; at
    every instant of the write two complete checkpoints exist (``files.install``). On
    failure (disk full, I/O error) the previous checkpoint is untouched and a
    ``CheckpointError`` says what happened.
    """
    path = Path(path)
    state = dict(state)
    state[CHECKSUM_KEY] = content_hash(state)
    try:
        with atomic_write(path, keep_previous=prev_path(path) if keep_previous else None) as f:
            torch.save(state, f)
    except OSError as e:
        reason = explain_os_error(e)
        previous = next((p for p in candidates(path) if p.exists()), None)
        kept = (f"The previous checkpoint {previous} is intact." if previous is not None
                else "No earlier checkpoint exists.")
        raise CheckpointError(f"could not write checkpoint {path}: {reason} ({e}). {kept} "
                              "Fix the cause and run the same command again to resume.") from e


def read_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load and verify one checkpoint; raise ``CheckpointError`` with the reason if it
    is missing, empty, unreadable, or its content does not match its checksum."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes: on Drive, an upload that never "
                              "finished)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path} cannot be read ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200] if str(e) else ''})") from e
    if not isinstance(state, dict) or CHECKSUM_KEY not in state:
        raise CheckpointError(f"{path} is not a colabkit checkpoint (no checksum)")
    if content_hash(state) != state[CHECKSUM_KEY]:
        raise CheckpointError(f"{path} fails its checksum: its content is damaged")
    return state


def describe_files(paths: list[Path]) -> str:
    """'last.pt (85.2 MB), last.prev.pt (0 bytes)' for the paths that exist."""
    out = []
    for p in paths:
        if p.exists():
            size = p.stat().st_size
            out.append(f"{p} ({size / 1e6:.1f} MB)" if size >= 1e5 else f"{p} ({size} bytes)")
    return ", ".join(out)


def finish_install(path: str | os.PathLike, keep_previous: bool = True) -> None:
    """Complete an install that a kill interrupted (``files.install``): a ``<stem>.next``
    file that verifies becomes ``path``, the current one kept as ``.prev``; one that does
    not verify is removed. Call it only while holding the folder's lease."""
    path = Path(path)
    nxt = next_path(path)
    if not nxt.exists():
        return
    try:
        read_checkpoint(nxt)
    except CheckpointError:
        empty_then_remove(nxt)
        return
    promote_next(path, prev_path(path) if keep_previous else None)
    fsync_dir(path.parent)


def find_latest(path: str | os.PathLike, map_location="cpu", *,
                quiet: bool = False) -> tuple[dict | None, Path | None]:
    """(state, file) of the newest version of ``path`` that verifies, trying
    ``candidates(path)`` in order (newest first) and reading only as many as needed;
    (None, None) if none exists. A damaged one is named in a warning and skipped. When
    files exist but none verifies, a ``CheckpointError`` lists them and what to try;
    nothing is ever deleted."""
    path = Path(path)
    found = [p for p in candidates(path) if p.exists()]
    bad = []
    for p in found:
        try:
            state = read_checkpoint(p, map_location)
        except CheckpointError as e:
            bad.append(str(e))
            continue
        for reason in bad if not quiet else ():  # said once an older one is used instead
            warnings.warn(f"skipping checkpoint: {reason}", stacklevel=2)
        return state, p
    if bad:
        raise CheckpointError(
            f"no checkpoint in {path.parent} verifies; found {describe_files(found)}: "
            + "; ".join(bad) + ". Nothing was changed. If the folder is on Google Drive, "
            "wait for Drive to finish uploading (or open it on the machine that trained) "
            "and run again; a copy of the run folder elsewhere (the local working copy "
            "under $COLABKIT_LOCAL) can be copied back.")
    return None, None


# ------------------------------------------------------- background writer ----

class CheckpointWriter:
    """Runs write jobs in order, on a background thread when ``background=True``, so
    training goes on while the bytes reach the disk. ``wait()`` re-raises a failed job."""

    def __init__(self, background: bool = False):
        self.background = background
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, job: Callable[[], None]) -> None:
        self.wait()
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
