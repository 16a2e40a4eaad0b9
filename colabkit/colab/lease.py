"""The lease: ``lease.json`` in a run folder names the one trainer that may write it.

After a Colab disconnect the VM is gone, and the next VM finds its lease with a heartbeat
some minutes old. It cannot ask the old VM whether it lives; it can only wait until the
heartbeat is older than the holder would ever leave it. That limit follows the run: the
holder records its own epoch time in the lease (the heartbeat is renewed once an epoch),
and it counts as gone after ``STALE_EPOCHS`` of them plus Drive's upload lag (another VM
sees a heartbeat only once Drive has uploaded it). On the same machine no waiting is
needed: the process is alive or not.
"""
from __future__ import annotations

import fcntl
import json
import os
import secrets
import socket
import time
import warnings
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from ..registry import Advice
from ..rundir.files import atomic_write, empty_then_remove, explain_os_error
from ..rundir.runs import read_json

STALE_EPOCHS = 3       # a holder silent for this many of its epoch times ...
UPLOAD_LAG_S = 5 * 60  # ... plus Drive's usual upload lag (minutes) is gone
STALE_MINUTES = 30.0   # before a holder has timed an epoch: data building, the first epoch

_TAKEOVER_NOW = ("tick TAKEOVER (takeover=True)", "pass --takeover")


class LeaseHeld(Advice):
    """Another trainer holds the run folder; the message says which and what to do, naming
    the notebook's ``TAKEOVER`` (``str``) or the command line's ``--takeover`` (``cli()``)."""


class LeaseLost(RuntimeError):
    """Another trainer took the run folder over while this one was training."""


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def start_ticks(pid: int) -> str:
    """When process ``pid`` started (tells a reused pid from the original), or ''."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _alive(pid: int, ticks: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not ticks or not start_ticks(pid) or start_ticks(pid) == ticks


def span(seconds: float) -> str:
    """``45 s``, ``7.5 min``."""
    seconds = max(seconds, 0.0)
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


class Lease:
    """``lease.json`` names the one trainer of a run folder (host, boot id, pid, a random
    id), its heartbeat, renewed every epoch, and its epoch time. A folder taken over stays
    taken over: a trainer that finds another id in the file at any time after it acquired
    stops, even when the one that took over has finished and let go, because letting go
    leaves the record, marked ``released``. Only a trainer that found no lease file at all
    (so that no earlier trainer can be waiting to learn it was replaced) removes it. On one
    machine, reading and writing the lease is one step (``flock`` on the run folder); across
    machines it is best effort: another VM sees a renewal only once Drive has uploaded it.

    ``writable()``: False while the folder cannot be written (its Drive mount is down);
    the lease is then not renewed, rather than written to the VM's disk."""

    def __init__(self, path: Path, stale_minutes: float = STALE_MINUTES,
                 writable: Callable[[], bool] | None = None):
        self.path = Path(path)
        self.stale_minutes = stale_minutes
        self.writable = writable
        self.me = {"id": secrets.token_hex(8), "host": socket.gethostname(),
                   "boot_id": _boot_id(), "pid": os.getpid(), "start": start_ticks(os.getpid())}
        self.epoch_seconds: float | None = None  # the longest of the last few heartbeat intervals
        self._beats: list[float] = []
        self._warned = False
        self._found = True  # a lease file was there at acquire: keep a record at release

    def read(self) -> dict | None:
        """The record in ``lease.json``: the holder, or the last one (``released``)."""
        record = read_json(self.path, None)
        return record if isinstance(record, dict) and "id" in record else None

    def holder(self) -> dict | None:
        """The trainer holding the folder now, or None (no record, or released)."""
        record = self.read()
        return None if record is None or record.get("released") else record

    @contextmanager
    def _locked(self):
        """Read-then-write of the lease as one step among the processes of this machine
        (an exclusive ``flock`` on the run folder, freed when the process dies). Where the
        file system has no locks the step goes on unlocked."""
        try:
            fd = os.open(self.path.parent, os.O_RDONLY)
        except OSError:
            yield
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:
                pass
            yield
        finally:
            os.close(fd)  # releases the lock

    @staticmethod
    def age_seconds(holder: dict, now: float | None = None) -> float:
        """Seconds since ``holder``'s last heartbeat (at ``now``, a Unix time; default now)."""
        return (time.time() if now is None else now) - float(holder.get("heartbeat_unix", 0))

    def limit_seconds(self, holder: dict) -> float:
        """How long another machine's holder may stay silent before it counts as gone:
        ``STALE_EPOCHS`` of its recorded epoch times plus ``UPLOAD_LAG_S``; before it has
        timed an epoch, ``stale_minutes``."""
        try:
            epoch = float(holder.get("epoch_seconds") or 0)
        except (TypeError, ValueError):
            epoch = 0.0
        return STALE_EPOCHS * epoch + UPLOAD_LAG_S if epoch > 0 else self.stale_minutes * 60

    def same_machine(self, holder: dict) -> bool:
        return holder.get("host") == self.me["host"] and holder.get("boot_id") == self.me["boot_id"]

    def gone(self, holder: dict) -> bool:
        """Provably gone: this machine (same boot), and its process is dead or is this
        one (an earlier call that stopped, in the same notebook kernel)."""
        if not self.same_machine(holder):
            return False
        pid = int(holder.get("pid", -1))
        return pid == self.me["pid"] or not _alive(pid, holder.get("start", ""))

    def stalled(self, holder: dict, now: float | None = None) -> bool:
        """The one rule of whether ``holder`` still trains: it has stalled when it is provably
        gone (``gone``), or is another machine's and has been silent past ``limit_seconds``.
        A trainer then resumes the folder without ``takeover``, and the status table says
        ``stalled``; otherwise it is ``running``, and a new trainer is refused."""
        if self.gone(holder):
            return True
        return not self.same_machine(holder) and self.age_seconds(holder, now) > self.limit_seconds(holder)

    @staticmethod
    def describe(holder: dict) -> str:
        return f"host {holder.get('host')} pid {holder.get('pid')}"

    def _refusal(self, holder: dict, age: float) -> LeaseHeld:
        folder = self.path.parent
        if self.same_machine(holder):  # alive: gone() said no
            return LeaseHeld(
                lambda takeover: f"{folder} is being trained right now by another notebook or "
                f"process on this runtime ({self.describe(holder)}, last heartbeat {span(age)} "
                "ago): let it finish, or stop it there. Only if this one should train instead, "
                f"{takeover}: the other stops at its next epoch.", takeover=_TAKEOVER_NOW)
        limit = self.limit_seconds(holder)
        why = (f"{STALE_EPOCHS} of its epoch times of {float(holder['epoch_seconds']):.0f} s plus "
               f"{UPLOAD_LAG_S / 60:g} min for Drive to upload a heartbeat"
               if holder.get("epoch_seconds") else "it has not timed an epoch yet")
        return LeaseHeld(
            lambda takeover: f"{folder} was being trained {span(age)} ago by another runtime "
            f"({self.describe(holder)}). If that runtime is gone (a disconnect), Run all again "
            f"in {span(limit - age)} (it counts as gone after {span(limit)} without a "
            f"heartbeat: {why}), or {takeover} now; if it still trains in another tab, "
            "leave this one.", takeover=_TAKEOVER_NOW)

    def acquire(self, takeover: bool = False) -> None:
        with self._locked():
            holder = self.holder()
            if holder is not None and holder["id"] != self.me["id"]:
                now = time.time()
                age = self.age_seconds(holder, now)
                if self.gone(holder):
                    pass  # this machine, process dead: nobody to tell
                elif takeover:
                    print(f"Taking over {self.path.parent} from {self.describe(holder)} "
                          f"(last heartbeat {span(age)} ago).")
                elif self.stalled(holder, now):  # another machine's, silent past its limit
                    print(f"The runtime that trained {self.path.parent} before "
                          f"({self.describe(holder)}) has been silent for {span(age)}, longer "
                          f"than this run's limit of {span(self.limit_seconds(holder))}: it is "
                          "gone (a disconnect). Resuming here.")
                else:
                    raise self._refusal(holder, age)
            self._found = self.read() is not None
            self._write()

    def check(self) -> None:
        """Raise ``LeaseLost`` if the file names another trainer, holding or released."""
        record = self.read()
        if record is not None and record["id"] != self.me["id"]:
            raise LeaseLost(
                f"{self.path.parent} was taken over by {self.describe(record)} at "
                f"{record.get('heartbeat')}; this trainer stops without writing more. Its "
                "last checkpoint is in the folder; the other trainer continues from it.")

    def heartbeat(self, epoch_seconds: float | None = None) -> None:
        """Once an epoch: stop if the folder was taken over, else renew, recording the epoch
        time (the longest of the last three heartbeat intervals, or ``epoch_seconds`` as
        measured by the trainer, whichever is longer). One step on this machine."""
        now = time.monotonic()
        self._beats = (self._beats + [now])[-4:]
        measured = [b - a for a, b in zip(self._beats, self._beats[1:])]
        known = measured + ([float(epoch_seconds)] if epoch_seconds else [])
        if len(measured) < 3 and self.epoch_seconds:  # few intervals yet: keep the run's own
            known.append(self.epoch_seconds)
        if known:
            self.epoch_seconds = max(known)
        with self._locked():
            self.check()
            self._write()

    def renew(self) -> None:
        with self._locked():
            self._write()

    def _write(self, **extra) -> None:
        if self.writable is not None and not self.writable():
            self._warn("the Drive mount is down")
            return
        now = datetime.now(timezone.utc)
        record = {**self.me, "heartbeat": now.isoformat(timespec="seconds"),
                  "heartbeat_unix": now.timestamp(), **extra}
        if self.epoch_seconds:
            record["epoch_seconds"] = round(self.epoch_seconds, 3)
        try:
            with atomic_write(self.path, "w", encoding="utf-8") as f:
                json.dump(record, f, indent=1)
        except OSError as e:
            self._warn(explain_os_error(e))

    def _warn(self, why: str) -> None:
        if not self._warned:
            warnings.warn(f"could not renew the lease {self.path} ({why}); training goes on",
                          stacklevel=4)
            self._warned = True

    def release(self) -> None:
        """Let go: the record stays (``released``) so that a trainer it replaced still stops,
        unless there was no lease file when this one acquired."""
        with self._locked():
            record = self.read()
            if record is None or record["id"] != self.me["id"] or record.get("released"):
                return
            if self._found or (self.writable is not None and not self.writable()):
                self._write(released=True)
            else:
                try:
                    empty_then_remove(self.path)
                except OSError:
                    pass


__all__ = ["Lease", "LeaseHeld", "LeaseLost", "STALE_EPOCHS", "STALE_MINUTES", "UPLOAD_LAG_S", "span",
           "start_ticks"]
