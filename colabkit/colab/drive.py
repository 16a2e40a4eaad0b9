"""Colab or not, and Google Drive's mount and flush as ``google.colab.drive`` gives them.

``google.colab`` exists only inside Colab, so it is imported inside the functions that
need it, never at module top.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Callable

DRIVE_MOUNTPOINT = "/content/drive"


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
# A mount that dropped is mounted again by colabkit when a mirror is due (``Remount``). A
# failed attempt waits REMOUNT_TIMEOUT_MS for the browser's answer (nobody answers with the
# tab closed), and drive.mount then waits up to that timeout plus 30 s more for DriveFS: up
# to about 2.5 minutes. Attempts back off (1 min, 2, 4, ... at most 30 min apart), and the
# wait after one is at least 99 times what it cost, so failed attempts take at most 1% of
# the time Drive is down.
REMOUNT_FIRST_WAIT_S = 60.0
REMOUNT_MAX_WAIT_S = 30 * 60.0
REMOUNT_SHARE = 0.01


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


class Remount:
    """Drive's mount brought back while it is down, by colabkit itself: each call that is
    due makes one ``drive.mount(force_remount=True)`` bounded by ``REMOUNT_TIMEOUT_MS``
    (``force_remount`` first unmounts the dead FUSE mount, which a plain mount would take
    for mounted). Calls between attempts cost nothing. Outside Colab, nothing to do.

    ``attempts`` and ``spent_s``: failed attempts since the mount was last seen live, and
    the seconds they took; ``error``: the last one's cause."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.attempts, self.spent_s, self.error = 0, 0.0, ""
        self._next = -math.inf

    def __call__(self, force: bool = False) -> bool:
        """True when Drive is mounted (now, or again after an attempt made here because
        one was due, or ``force``: the stop's last chance)."""
        if drive_mounted():
            self.attempts, self.spent_s, self._next = 0, 0.0, -math.inf
            return True
        if not in_colab() or (not force and self.clock() < self._next):
            return False
        from google.colab import drive

        start = self.clock()
        try:
            drive.mount(DRIVE_MOUNTPOINT, force_remount=True, timeout_ms=REMOUNT_TIMEOUT_MS)
            self.error = "it was not mounted after drive.mount"
        except ValueError as e:  # drive.mount's own failures ('mount failed', ...)
            self.error = str(e)
        except Exception as e:  # noqa: BLE001 - no kernel to ask the browser through
            self.error = (f"{type(e).__name__}: {e}; a process started from a cell (!python) "
                          "cannot ask the browser: run colabkit.mount_drive() in a cell")
        if drive_mounted():
            print(f"Drive's mount had dropped: mounted again at {DRIVE_MOUNTPOINT}.")
            self.attempts, self.spent_s, self._next = 0, 0.0, -math.inf
            return True
        cost = self.clock() - start
        self.attempts += 1
        self.spent_s += cost
        backoff = min(REMOUNT_FIRST_WAIT_S * 2 ** (self.attempts - 1), REMOUNT_MAX_WAIT_S)
        self._next = self.clock() + max(backoff, cost * (1 / REMOUNT_SHARE - 1))
        return False


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
