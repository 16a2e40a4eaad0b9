"""Atomic file writes: a file is replaced whole or not at all, so a kill at any instant
leaves either the old version or the new one, never half of one."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (not possible on every file system)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_write(path: Path, mode: str = "wb", keep_previous: Path | None = None,
                 **open_kwargs) -> Iterator[IO]:
    """Yield a file; on success it is flushed, fsynced and renamed over ``path`` (the
    old ``path`` first renamed to ``keep_previous``, if given), and the folder fsynced.
    On any failure or interrupt the temporary file is removed and ``path`` is untouched."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if keep_previous is not None and path.exists():
            os.replace(path, keep_previous)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
