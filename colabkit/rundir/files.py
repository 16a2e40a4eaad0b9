"""Atomic file writes that a synced folder such as Google Drive cannot turn against us.

A file is replaced whole or not at all, so a kill at any instant leaves the old version
or the new one, never half of one. Two facts of Google Drive shape how (docs/colab-and-drive.md,
"The Trash"):

- a file removed or replaced there goes to Drive's Trash and counts against the quota
  for 30 days, unless it was emptied (truncated to 0 bytes) first: so no file over
  ``BIG`` bytes is ever removed or renamed over before it is emptied;
- two machines can write the same folder: so temporary names carry the host, the
  process and a random part, and are never shared.

Large files written with ``keep_previous`` (checkpoints) are installed in steps that
leave at least two complete versions under names a reader knows at every instant
(``<stem>.next<suffix>``, ``<name>``, ``<stem>.prev<suffix>``), like a database's
double-buffered header: one whole copy always exists, whatever dies mid-write.
"""
from __future__ import annotations

import errno
import os
import secrets
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

BIG = 1 << 20  # files larger than this are emptied before they are removed or replaced
TEMP_MARK = ".tmp-"


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


def sibling(path: Path, tag: str) -> Path:
    """``last.pt`` -> ``last.<tag>.pt``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.{tag}{path.suffix}")


def prev_path(path: Path) -> Path:
    return sibling(path, "prev")


def next_path(path: Path) -> Path:
    return sibling(path, "next")


def candidates(path: Path) -> list[Path]:
    """The files that may hold ``path``'s newest version, newest first: ``<stem>.next``
    (exists only while a write is being installed), ``path``, ``<stem>.prev``."""
    path = Path(path)
    return [next_path(path), path, prev_path(path)]


def explain_os_error(e: OSError) -> str:
    """The cause of a failed write in words a user can act on."""
    what = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
            errno.EIO: "an I/O error (on Drive: the mount may have dropped)",
            errno.EROFS: "the file system is read-only"}
    return what.get(e.errno, e.strerror or str(e))


def temp_path(path: Path) -> Path:
    """A hidden name in ``path``'s folder that no other process on any machine uses."""
    host = "".join(c for c in socket.gethostname() if c.isalnum())[:24] or "host"
    return path.with_name(f".{path.name}{TEMP_MARK}{host}-{os.getpid()}-{secrets.token_hex(4)}")


def is_temporary(path: Path) -> bool:
    """colabkit's temporary names: ``.<name>.tmp-<host>-<pid>-<random>``, and the
    ``.<name>.tmp<pid>`` of colabkit 0.1 (leftovers of a kill before the upgrade)."""
    name = path.name
    return name.startswith(".") and (TEMP_MARK in name or name.rpartition(".tmp")[2].isdigit())


def empty_then_remove(path: Path) -> None:
    """Remove ``path``; a large file is truncated to 0 bytes first, so a synced folder
    sends nothing but an empty file to its Trash."""
    try:
        if path.stat().st_size > BIG:
            os.truncate(path, 0)
        os.remove(path)
    except FileNotFoundError:
        pass


def _empty(path: Path) -> None:
    if path.exists() and path.stat().st_size > 0:
        os.truncate(path, 0)


def remove_temporaries(folder: Path) -> list[str]:
    """Remove the temporary files colabkit left in ``folder`` (a kill during a write);
    call it only while holding the folder's lease. Returns the names removed."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for p in entries:
        if is_temporary(p) and p.is_file():
            try:
                empty_then_remove(p)
                removed.append(p.name)
            except OSError:
                pass
    return removed


def install(tmp: Path, path: Path, keep_previous: Path | None = None) -> None:
    """Rename the complete file ``tmp`` to ``path``.

    A small file without ``keep_previous`` is one atomic rename. Otherwise the new
    version first takes the name ``next_path(path)``, then the old ``keep_previous``
    is emptied and the current ``path`` renamed to it (or, without ``keep_previous``,
    ``path`` is emptied), and ``next`` becomes ``path``: no large file is renamed over
    before it is emptied, and every instant shows two complete versions when two existed.
    """
    nxt = next_path(path)
    big = path.exists() and path.stat().st_size > BIG
    if keep_previous is None and not big and not nxt.exists():
        os.replace(tmp, path)
        return
    _empty(nxt)  # a stale one from a kill between these steps
    os.replace(tmp, nxt)
    promote_next(path, keep_previous)


def promote_next(path: Path, keep_previous: Path | None = None) -> None:
    """The last steps of ``install`` (also run at start after a kill): the complete
    ``<stem>.next`` becomes ``path``; the current ``path``, if any, becomes
    ``keep_previous`` (emptied first) or is emptied."""
    if keep_previous is not None:
        if path.exists():  # else .prev already holds the older version: keep it
            _empty(keep_previous)
            os.replace(path, keep_previous)
    else:
        _empty(path)
    os.replace(next_path(path), path)


@contextmanager
def atomic_write(path: Path, mode: str = "wb", keep_previous: Path | None = None,
                 **open_kwargs) -> Iterator[IO]:
    """Yield a file; on success it is flushed, fsynced and installed as ``path`` (see
    ``install``), and the folder fsynced. On any failure or interrupt the temporary file
    is removed and ``path`` is untouched."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        with open(tmp, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        install(tmp, path, keep_previous)
        fsync_dir(path.parent)
    finally:
        try:
            empty_then_remove(tmp)
        except OSError:
            pass
