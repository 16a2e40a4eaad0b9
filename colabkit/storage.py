"""Where a run's files live: a local working copy mirrored to Google Drive, a lease that
names the one trainer of a run folder, and no leftovers.

Google Drive mounted in Colab is not a local disk (shared/DESIGN.md): ``fsync`` reaches
only a local cache and the upload follows minutes later; a replaced file goes to the
Trash and counts against the quota; the mount drops (ENOTCONN, EIO) or fills (ENOSPC,
EDQUOT); two runtimes can open the same folder. So a run folder on Drive is trained from
a working copy on the VM's disk (``$COLABKIT_LOCAL/<run name>``), checkpointed there as
usual, and mirrored to Drive every ``mirror_minutes`` and at every stop. Drive faults
warn and never stop training; the mirror catches up when Drive is back. A run folder
elsewhere is its own working copy and behaves as a local disk.

A folder is "on Drive" when it lies under the Colab mount point or under one of the
folders in ``$COLABKIT_DRIVE`` (``os.pathsep``-separated: Dropbox, OneDrive, network
mounts, and the tests' simulation).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import secrets
import shutil
import socket
import tempfile
import time
import warnings
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from . import quota, runtime
from .checkpoint import CheckpointError, find_latest, finish_install
from .files import atomic_write, empty_then_remove, explain_os_error, remove_temporaries
from .runs import RunDir, read_json, write_metrics

DRIVE_ENV, LOCAL_ENV = "COLABKIT_DRIVE", "COLABKIT_LOCAL"


class LeaseHeld(RuntimeError):
    """Another trainer holds the run folder."""


class LeaseLost(RuntimeError):
    """Another trainer took the run folder over while this one was training."""


# ------------------------------------------------------------------ where ----

def drive_roots() -> list[Path]:
    roots = [Path(runtime.DRIVE_MOUNTPOINT)]
    roots += [Path(p).expanduser() for p in os.environ.get(DRIVE_ENV, "").split(os.pathsep) if p]
    return [r.resolve() for r in roots]


def is_drive(path: str | os.PathLike) -> bool:
    """True if ``path`` lies on Google Drive (or a folder given the Drive policy)."""
    p = Path(path).expanduser().resolve()
    return any(p == r or r in p.parents for r in drive_roots())


def local_area() -> Path:
    """The local working area: ``$COLABKIT_LOCAL``, else ``/content/colabkit-local`` in
    Colab, else ``<tmp>/colabkit-local``."""
    if os.environ.get(LOCAL_ENV):
        return Path(os.environ[LOCAL_ENV]).expanduser().resolve()
    return Path("/content/colabkit-local") if runtime.in_colab() else \
        Path(tempfile.gettempdir()) / "colabkit-local"


def working_copy(run_dir: Path) -> Path:
    """``<local area>/<run name>``; a second Drive folder of the same name gets its own
    (the origin is recorded in ``.origin``)."""
    run_dir = Path(run_dir).expanduser().resolve()
    local = local_area() / run_dir.name
    origin = local / ".origin"
    try:
        if origin.is_file() and origin.read_text(encoding="utf-8") != str(run_dir):
            local = local_area() / f"{run_dir.name}-{hashlib.sha1(str(run_dir).encode()).hexdigest()[:8]}"
        local.mkdir(parents=True, exist_ok=True)
        (local / ".origin").write_text(str(run_dir), encoding="utf-8")
    except OSError as e:
        raise PermissionError(f"cannot create the local working copy {local} ({e}): set "
                              f"{LOCAL_ENV} to a folder on a local disk you can write to") from e
    return local


# ------------------------------------------------------------------ lease ----

def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _start_ticks(pid: int) -> str:
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
    return not ticks or not _start_ticks(pid) or _start_ticks(pid) == ticks


class Lease:
    """``lease.json`` names the one trainer of a run folder (host, boot id, pid, a random
    id) and its heartbeat, renewed every epoch. A folder taken over stays taken over: a
    trainer that finds another id in the file at any time after it acquired stops, even
    when the one that took over has finished and let go, because letting go leaves the
    record, marked ``released``. Only a trainer that found no lease file at all (so that no
    earlier trainer can be waiting to learn it was replaced) removes it. On one machine, reading and
    writing the lease is one step (``flock`` on the run folder); across machines it is best
    effort: another VM sees a renewal only once Drive has uploaded it."""

    def __init__(self, path: Path, stale_minutes: float = 30.0):
        self.path = Path(path)
        self.stale_minutes = stale_minutes
        self.me = {"id": secrets.token_hex(8), "host": socket.gethostname(),
                   "boot_id": _boot_id(), "pid": os.getpid(), "start": _start_ticks(os.getpid())}
        self._warned = False
        self._found = True  # a lease file was there at acquire: keep a record at release

    def read(self) -> dict | None:
        """The record in ``lease.json``: the holder, or the last one (``released``)."""
        try:
            record = read_json(self.path)
        except (OSError, ValueError):
            return None
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

    def _age_minutes(self, holder: dict) -> float:
        return (time.time() - float(holder.get("heartbeat_unix", 0))) / 60

    def gone(self, holder: dict) -> bool:
        """Provably gone: this machine (same boot), and its process is dead or is this
        one (an earlier call that stopped, in the same notebook kernel)."""
        if holder.get("host") != self.me["host"] or holder.get("boot_id") != self.me["boot_id"]:
            return False
        pid = int(holder.get("pid", -1))
        return pid == self.me["pid"] or not _alive(pid, holder.get("start", ""))

    @staticmethod
    def describe(holder: dict) -> str:
        return f"host {holder.get('host')} pid {holder.get('pid')}"

    def acquire(self, takeover: bool = False) -> None:
        with self._locked():
            holder = self.holder()
            if holder is not None and holder["id"] != self.me["id"]:
                age = self._age_minutes(holder)
                if not (takeover or self.gone(holder) or age > self.stale_minutes):
                    raise LeaseHeld(
                        f"{self.path.parent} is being trained by {self.describe(holder)} (last "
                        f"heartbeat {max(age, 0):.1f} min ago). Wait for it to finish, or if "
                        "that trainer is gone (a closed tab, a dead VM), run again with "
                        f"--takeover (takeover=True); after {self.stale_minutes:g} min without a "
                        "heartbeat it is taken over by itself.")
                if not self.gone(holder):
                    print(f"Taking over {self.path.parent} from {self.describe(holder)} "
                          f"(last heartbeat {max(age, 0):.1f} min ago).")
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

    def heartbeat(self) -> None:
        """Stop if the folder was taken over, else renew: one step on this machine."""
        with self._locked():
            self.check()
            self._write()

    def renew(self) -> None:
        with self._locked():
            self._write()

    def _write(self, **extra) -> None:
        now = datetime.now(timezone.utc)
        record = {**self.me, "heartbeat": now.isoformat(timespec="seconds"),
                  "heartbeat_unix": now.timestamp(), **extra}
        try:
            with atomic_write(self.path, "w", encoding="utf-8") as f:
                json.dump(record, f, indent=1)
        except OSError as e:
            if not self._warned:
                warnings.warn(f"could not renew the lease {self.path} ({explain_os_error(e)}); "
                              "training goes on", stacklevel=3)
                self._warned = True

    def release(self) -> None:
        """Let go: the record stays (``released``) so that a trainer it replaced still stops,
        unless there was no lease file when this one acquired."""
        with self._locked():
            record = self.read()
            if record is None or record["id"] != self.me["id"] or record.get("released"):
                return
            if self._found:
                self._write(released=True)
            else:
                try:
                    empty_then_remove(self.path)
                except OSError:
                    pass


# ---------------------------------------------------------------- storage ----

class RunStorage:
    """One run folder's files: where training writes them (``work``), the folder the user
    named (``home``: the same, or the Drive folder it is mirrored to), the lease."""

    SMALL = ("config", "environment", "predictions", "metrics", "drive_log")

    def __init__(self, run_dir: str | os.PathLike, *, mirror_minutes: float = 10.0,
                 takeover: bool = False, stale_minutes: float = 30.0):
        if mirror_minutes < 0:
            raise ValueError(f"mirror_minutes must be >= 0, got {mirror_minutes:g}")
        self.home = RunDir(run_dir)
        self.drive = is_drive(self.home.path)
        self.work = RunDir(working_copy(self.home.path)) if self.drive else self.home
        self.mirror_minutes = mirror_minutes
        self.takeover = takeover
        self.lease = Lease(self.home.lease, stale_minutes)
        self.local_epoch = 0       # newest checkpoint in the working copy
        self.mirrored_epoch = 0    # newest checkpoint known to be on Drive
        self.behind = False
        self._best_pending = False
        self._last_mirror = -math.inf

    # ---- start
    def open(self) -> dict | None:
        """Claim the folder (lease), remove leftovers and finish interrupted installs;
        return the newest checkpoint that verifies, local or Drive, or None."""
        self.home.ensure_writable()
        self.lease.acquire(self.takeover)
        try:
            for run in {self.home.path: self.home, self.work.path: self.work}.values():
                remove_temporaries(run.path)
                finish_install(run.last)
                finish_install(run.best, keep_previous=False)
            state = self.load()
        except BaseException:
            self.lease.release()
            raise
        # a working copy ahead of Drive (Drive was down at the last stop) is copied at the
        # first mirror, due at the first checkpoint, or at close
        self._best_pending = self.drive and self.local_epoch > self.mirrored_epoch and self.work.best.exists()
        if self.drive:
            self._measure("start", self.local_epoch)
        return state

    def load(self) -> dict | None:
        """The newest checkpoint that verifies among the working copy and Drive (read
        only: what other DDP ranks call)."""
        found, errors = [], []
        for run in ([self.work, self.home] if self.drive else [self.home]):
            try:
                state, _ = find_latest(run.last)
            except CheckpointError as e:
                errors.append(str(e))
                continue
            if state is not None:
                found.append((int(state["epoch"]), run is self.work, state))
        if not found and errors:
            raise CheckpointError(" ".join(errors))
        if self.drive:
            self.local_epoch = max((e for e, local, _ in found if local), default=0)
            self.mirrored_epoch = max((e for e, local, _ in found if not local), default=0)
        else:
            self.local_epoch = self.mirrored_epoch = max((e for e, _, _ in found), default=0)
        if not found:
            return None
        return max(found, key=lambda t: (t[0], t[1]))[2]

    def check_space(self, checkpoint_bytes: int, best_bytes: int) -> None:
        """Warn when a disk has less free space than the run needs: the working copy
        holds up to three checkpoints at once (last, prev, next) and two best ones."""
        need = 3 * checkpoint_bytes + 2 * best_bytes + (1 << 20)
        for label, folder in (("Drive", self.home.path) if self.drive else ("disk", self.home.path),
                              ("local disk", self.work.path)):
            try:
                free = shutil.disk_usage(folder).free
            except OSError:
                continue
            if free < need:
                warnings.warn(f"{label} at {folder} has {free / 1e9:.2f} GB free; this run "
                              f"needs about {need / 1e9:.2f} GB (3 checkpoints of "
                              f"{checkpoint_bytes / 1e6:.0f} MB and best.pt). Free some space, "
                              "or writes will fail", stacklevel=2)
            if not self.drive:
                break

    # ---- every epoch
    def heartbeat(self) -> None:
        """Before an epoch's writes: stop if the lease was taken over, else renew it."""
        self.lease.heartbeat()

    def committed(self, epoch: int, best_written: bool) -> None:
        """After a checkpoint (and metrics.csv) committed in the working copy: mirror to
        Drive when due (``close`` makes the last one)."""
        self.local_epoch = epoch
        self._best_pending |= best_written
        if self.drive and time.monotonic() - self._last_mirror >= self.mirror_minutes * 60:
            self.mirror(epoch)

    def mirror(self, epoch: int, force: bool = False) -> bool:
        """Copy the working copy's newest checkpoint (and best.pt if it changed, and the
        small files) to Drive. A Drive fault warns and is retried at the next mirror."""
        self._last_mirror = time.monotonic()
        try:
            if force or self.mirrored_epoch < epoch:
                self._copy(self.work.last, self.home.last, keep_previous=self.home.last_prev)
            if self._best_pending and self.work.best.exists():
                self._copy(self.work.best, self.home.best)
            self._measure("mirror", epoch)
            for name in self.SMALL:
                src = getattr(self.work, name)
                if src.exists():
                    self._copy(src, getattr(self.home, name))
        except OSError as e:
            if not self.behind:
                warnings.warn(f"could not copy the run to Drive ({explain_os_error(e)}: {e}). "
                              f"Training goes on in the local copy {self.work.path} and Drive "
                              "catches up at the next mirror.", stacklevel=2)
            self.behind = True
            return False
        self.mirrored_epoch, self._best_pending = max(self.mirrored_epoch, epoch), False
        if self.behind:
            print(f"Drive is back: the run is copied up to epoch {epoch}.")
        self.behind = False
        return True

    def reconcile(self, history: list[dict]) -> None:
        """metrics.csv rewritten from the checkpoint's history, wherever the run lives."""
        write_metrics(self.work.metrics, history)
        if self.drive:
            try:
                self._copy(self.work.metrics, self.home.metrics)
            except OSError as e:
                warnings.warn(f"could not write {self.home.metrics} ({explain_os_error(e)})",
                              stacklevel=2)

    def _measure(self, event: str, epoch: int) -> None:
        """A row of ``drive.csv``: Drive's used and total bytes and the run's own (quota.py).
        A working copy new to this VM first takes the rows already on Drive."""
        log, home_log = self.work.drive_log, self.home.drive_log
        try:
            if not log.exists() and home_log.is_file():
                shutil.copyfile(home_log, log)
            quota.record(log, self.home.path, event, epoch)
        except OSError as e:
            warnings.warn(f"could not measure Drive's usage ({explain_os_error(e)}: {e})",
                          stacklevel=3)

    @staticmethod
    def _copy(src: Path, dst: Path, keep_previous: Path | None = None) -> None:
        with open(src, "rb") as f, atomic_write(dst, keep_previous=keep_previous) as out:
            shutil.copyfileobj(f, out, 1 << 22)

    # ---- stop
    def close(self, flush: bool = True, lost: bool = False) -> str:
        """At every stop: the last mirror, Drive flushed, the lease released. Returns a
        line saying where the run's newest state is."""
        if lost:
            return ""
        note = ""
        if self.drive:
            if self.mirrored_epoch < self.local_epoch or self._best_pending:
                self.mirror(self.local_epoch)
            note = self._quota_note()
            if flush:
                runtime.flush_drive(self.home.path)
            if self.behind or self.mirrored_epoch < self.local_epoch:
                note = (f"{note}The Drive copy is behind: epoch {self.mirrored_epoch} on Drive, epoch "
                        f"{self.local_epoch} in the local copy {self.work.path}. Run again when "
                        "Drive works: the copy catches up.")
            else:
                note = f"{note}The Drive copy is up to date (epoch {self.mirrored_epoch})."
        self.lease.release()
        return note

    def _quota_note(self) -> str:
        """Measure at the stop, copy drive.csv up, and say how Drive's usage grew this
        session; warn when it grew by more than 1 GB beyond the run's own files."""
        self._measure("stop", self.local_epoch)
        try:
            self._copy(self.work.drive_log, self.home.drive_log)
        except OSError:
            pass  # the rows stay in the working copy; the next mirror copies them
        line, warning = quota.stop_report(quota.read_log(self.work.drive_log))
        if warning:
            warnings.warn(warning, stacklevel=3)
        return f"{line}\n" if line else ""


__all__ = ["RunStorage", "Lease", "LeaseHeld", "LeaseLost", "is_drive", "local_area",
           "working_copy", "drive_roots"]

