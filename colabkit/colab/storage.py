"""Where a run's files live: a local working copy mirrored to Google Drive, a lease that
names the one trainer of a run folder, and no leftovers.

Google Drive mounted in Colab is not a local disk: ``fsync`` reaches
only a local cache and the upload follows minutes later; a replaced file goes to the
Trash and counts against the quota; the mount drops (ENOTCONN, EIO) or fills (ENOSPC,
EDQUOT); two runtimes can open the same folder. So a run folder on Drive is trained from
a working copy on the VM's disk (``$COLABKIT_LOCAL/<run name>``), checkpointed there as
usual, and mirrored to Drive every ``mirror_minutes`` and at every stop. Drive faults
warn and never stop training; the mirror catches up when Drive is back. Nothing is
written under the Colab mount point while Drive is not mounted there (it would land on
the VM's disk and make the next mount refuse): Drive counts as down then. A stop never
raises because of Drive. A run folder elsewhere is its own working copy and behaves as a
local disk.

Which folders are "on Drive", and where the working copy goes, is ``colab.places``'s.
"""
from __future__ import annotations

import errno
import math
import os
import shutil
import threading
import time
import warnings
from pathlib import Path

from ..registry import SettingError, setting
from ..rundir.checkpoint import CheckpointError, find_latest, finish_install
from ..rundir.files import atomic_write, explain_os_error, remove_temporaries
from ..rundir.events import write_events
from ..rundir.runs import RunDir, read_json, write_metrics
from . import quota, drive
from .lease import STALE_MINUTES, Lease
from .places import is_drive, working_copy

# ---------------------------------------------------------------- storage ----

class RunStorage:
    """One run folder's files: where training writes them (``work``), the folder the user
    named (``home``: the same, or the Drive folder it is mirrored to), the lease."""

    SMALL = ("config", "environment", "predictions", "metrics", "events", "drive_log")

    def __init__(self, run_dir: str | os.PathLike, *, mirror_minutes: float = 10.0,
                 takeover: bool = False, stale_minutes: float = STALE_MINUTES):
        if mirror_minutes < 0:
            raise SettingError(lambda field: f"{field} must be >= 0, got {mirror_minutes:g}",
                               field=setting("mirror_minutes"))
        self.home = RunDir(run_dir)
        self.drive = is_drive(self.home.path)
        self.work = RunDir(working_copy(self.home.path)) if self.drive else self.home
        self.mirror_minutes = mirror_minutes
        self.takeover = takeover
        self.lease = Lease(self.home.lease, stale_minutes, writable=self.live)
        self.local_epoch = 0       # newest checkpoint in the working copy
        self.mirrored_epoch = 0    # newest checkpoint known to be on Drive
        self.behind = False
        self._best_pending = False
        self._last_mirror = -math.inf
        self._said_rate = self._said_quota = False
        self._remount = drive.Remount()  # a dropped mount, mounted again at a mirror
        self._lock = threading.RLock()  # a rank's watcher may close while a mirror runs
        self._closed: str | None = None

    def live(self) -> bool:
        """False while the Drive folder's mount is down: then nothing is written there."""
        return not self.drive or drive.mount_live(self.home.path)

    def stop_seconds(self, flush: bool = True) -> float:
        """The most a stop can take beyond the last mirror: the flush of Drive and the
        remount, each bounded by its timeout (in Colab, for a folder under the mount)."""
        return drive.flush_seconds(self.home.path) if flush and self.drive else 0.0

    # ---- start
    def open(self) -> dict | None:
        """Claim the folder (lease), remove leftovers and finish interrupted installs;
        return the newest checkpoint that verifies, local or Drive, or None."""
        if not self.live():
            raise drive.DriveError(
                f"{self.home.path} is on Google Drive, but Drive is not mounted at "
                f"{drive.DRIVE_MOUNTPOINT}: run colabkit.mount_drive() (approve Drive access), "
                "then train again.")
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
        if state is not None:  # the run's epoch time, for the stale limit of its lease
            seconds = [float(r["seconds"]) for r in state["history"][-3:] if r.get("seconds")]
            if seconds:
                self.lease.epoch_seconds = max(seconds)
                self.lease.renew()
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
    def heartbeat(self, epoch_seconds: float | None = None) -> None:
        """Before an epoch's writes, on the training loop's thread: a dropped Drive mount
        mounted again when a mirror is due and an attempt too (``drive.Remount``: on this
        thread, since google.colab's requests to the browser are not thread-safe and the
        mirror may run on the checkpoint writer's); then stop if the lease was taken over,
        else renew it with the epoch time (how long the lease may stay silent follows it)."""
        if self.drive and not self.live() and self._closed is None and \
                time.monotonic() - self._last_mirror >= self.mirror_minutes * 60:
            with self._lock:
                self._remount()
        self.lease.heartbeat(epoch_seconds)

    def committed(self, epoch: int, best_written: bool) -> None:
        """After a checkpoint (and metrics.csv) committed in the working copy: mirror to
        Drive when due (``close`` makes the last one)."""
        self.local_epoch = epoch
        self._best_pending |= best_written
        if self.drive and time.monotonic() - self._last_mirror >= self.mirror_minutes * 60:
            self.mirror(epoch)

    def mirror(self, epoch: int, force: bool = False) -> bool:
        """Copy the working copy's newest checkpoint (and best.pt if it changed, and the
        small files) to Drive. A Drive fault warns and is retried at the next mirror (a
        dropped mount is mounted again by ``heartbeat`` and ``close``)."""
        with self._lock:
            return self._closed is None and self._mirror(epoch, force)  # closed: let go

    def _mirror(self, epoch: int, force: bool) -> bool:
        self._last_mirror = time.monotonic()
        try:
            if not self.live():
                raise OSError(errno.ENOTCONN, f"Drive is not mounted at {drive.DRIVE_MOUNTPOINT}")
            wrote = 0
            if force or self.mirrored_epoch < epoch:
                wrote += self.work.last.stat().st_size
                self._copy(self.work.last, self.home.last, keep_previous=self.home.last_prev)
            if self._best_pending and self.work.best.exists():
                wrote += self.work.best.stat().st_size
                self._copy(self.work.best, self.home.best)
            self._measure("mirror", epoch)
            self._quota_check()
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
        self._say_rate(wrote)
        if self.behind:
            print(f"Drive is back: the run is copied up to epoch {epoch}.")
        self.behind = False
        return True

    def reconcile(self, history: list[dict]) -> None:
        """metrics.csv and TensorBoard's event file rewritten from the checkpoint's history,
        wherever the run lives."""
        write_metrics(self.work.metrics, history)
        config = read_json(self.work.config, None)  # a new VM's working copy may have none yet
        if config is None and self.drive and self.live():
            config = read_json(self.home.config, None)
        wrote_events = write_events(self.work, history, config)
        if self.drive and self.live():
            for name in ("metrics", "events") if wrote_events else ("metrics",):
                try:
                    self._copy(getattr(self.work, name), getattr(self.home, name))
                except OSError as e:
                    warnings.warn(f"could not write {getattr(self.home, name)} "
                                  f"({explain_os_error(e)})", stacklevel=2)

    def _measure(self, event: str, epoch: int) -> None:
        """A row of ``drive.csv``: Drive's used and total bytes and the run's own (colab.quota).
        A working copy new to this VM first takes the rows already on Drive."""
        log, home_log = self.work.drive_log, self.home.drive_log
        if not self.live():  # statvfs of the bare mount point would measure the VM's disk
            return
        try:
            if not log.exists() and home_log.is_file():
                shutil.copyfile(home_log, log)
            quota.record(log, self.home.path, event, epoch)
        except OSError as e:
            warnings.warn(f"could not measure Drive's usage ({explain_os_error(e)}: {e})",
                          stacklevel=3)

    def _quota_check(self) -> None:
        """At every mirror: warn once a session when Drive grew by more than
        ``quota.WARN_BYTES`` beyond the run's own files (the stop prints the figures)."""
        if self._said_quota:
            return
        _, warning = quota.stop_report(quota.read_log(self.work.drive_log))
        if warning:
            warnings.warn(warning, stacklevel=4)
            self._said_quota = True

    def _say_rate(self, wrote: int) -> None:
        """With a mirror every epoch, say once what that writes to Drive per hour."""
        epoch = self.lease.epoch_seconds
        if self.mirror_minutes or self._said_rate or not wrote or not epoch:
            return
        self._said_rate = True
        per_hour = wrote * 3600 / epoch
        print(f"Mirroring to Drive every epoch (MIRROR_MINUTES = 0, --mirror-minutes 0): about "
              f"{wrote / 1e6:.0f} MB per mirror, {per_hour / 1e9:.1f} GB per hour at "
              f"{epoch:.0f} s an epoch; every 10 minutes would write "
              f"{min(per_hour, wrote * 6) / 1e9:.1f} GB per hour.")

    @staticmethod
    def _copy(src: Path, dst: Path, keep_previous: Path | None = None) -> None:
        with open(src, "rb") as f, atomic_write(dst, keep_previous=keep_previous) as out:
            shutil.copyfileobj(f, out, 1 << 22)

    # ---- stop
    def close(self, flush: bool = True) -> str:
        """At every stop, once: a dropped mount mounted again (one last attempt, backoff or
        not), the last mirror, the lease released, Drive flushed. Never raises because of
        Drive: a failed flush or remount is one warning saying what is on Drive, what is
        only in the working copy and what to run. Returns a line saying where the run's
        newest state is. A second call (another thread: a rank's watcher) returns it too."""
        with self._lock:
            if self._closed is None:
                self._closed = self._close(flush)
            return self._closed

    def _close(self, flush: bool) -> str:
        note = ""
        try:
            if self.drive:
                if not self.live():
                    self._remount(force=True)
                if self.mirrored_epoch < self.local_epoch or self._best_pending:
                    self._mirror(self.local_epoch, False)
                note = self._quota_note()
        finally:
            # before the flush, so that the flush uploads it too (released after it, the
            # release would wait in Drive's cache, lost with the VM)
            self.lease.release()
        if not self.drive:
            return note
        if flush:
            try:
                drive.flush_drive(self.home.path)
            except drive.DriveError as e:
                warnings.warn(self._flush_advice(e), stacklevel=3)
        if self.behind or self.mirrored_epoch < self.local_epoch:
            tried = (f" Drive's mount is down: {self._remount.attempts} attempt(s) to mount it "
                     f"again failed ({self._remount.error})." if self._remount.attempts else "")
            return (f"{note}The Drive copy is behind: epoch {self.mirrored_epoch} on Drive, epoch "
                    f"{self.local_epoch} in the local copy {self.work.path}.{tried} Run again "
                    "when Drive works: the copy catches up.")
        return f"{note}The Drive copy is up to date (epoch {self.mirrored_epoch})."

    def _flush_advice(self, e: drive.DriveError) -> str:
        where = (f"Drive has epoch {self.mirrored_epoch} in its cache, uploading by itself while "
                 "this runtime lives" if not e.flushed else f"Drive has epoch {self.mirrored_epoch}")
        if self.local_epoch > self.mirrored_epoch:
            where += f"; epoch {self.local_epoch} is only in the local copy {self.work.path}"
        todo = ("run colabkit.flush_drive() to force the upload" if e.mounted else
                "run colabkit.mount_drive() (approve Drive access), then run this again: the "
                "Drive copy catches up")
        return f"Drive: {e} at the stop. {where}; {todo}."

    def _quota_note(self) -> str:
        """Measure at the stop, copy drive.csv up, and say how Drive's usage grew this
        session; warn when it grew by more than 1 GB beyond the run's own files."""
        self._measure("stop", self.local_epoch)
        try:
            self._copy(self.work.drive_log, self.home.drive_log)
        except OSError:
            pass  # the rows stay in the working copy; the next mirror copies them
        line, warning = quota.stop_report(quota.read_log(self.work.drive_log))
        if warning and not self._said_quota:  # a mirror may have said it already
            warnings.warn(warning, stacklevel=3)
        return f"{line}\n" if line else ""


__all__ = ["RunStorage"]

