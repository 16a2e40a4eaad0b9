"""A stand-in for ``google.colab.drive`` that keeps the real module's contract, for the
tests and for the notebook kernels they start.

The contract is googlecolab/colabtools, ``google/colab/drive.py`` (read 2026-12, commit
3c07d77) and ``google/colab/_message.py``. Each behaviour below names the lines it
follows; what the source does not say is marked ASSUMED. colabkit may rely only on what
is written here with a source.

The simulated VM is one folder, ``vm``:

- ``vm/content/drive``: the mount point. While "mounted", Drive's folders (``MyDrive``
  and the ``My Drive`` alias) are in it; at an unmount they move to ``vm/cloud`` (Google's
  side), so a folder created under the mount point while it is not mounted lands on the
  "VM's disk", and the next ``mount`` refuses, as the real one does.
- ``vm/colab-state.json``: whether Drive is mounted, and the knobs a test turns:
  ``browser`` (``answers``, ``never``: the tab is closed and nobody answers the access
  request), ``drivefs`` (``ok``, ``fail``), ``flush`` (``ok``, ``fail``, ``stall``),
  ``stale`` (the mount dropped: ENOTCONN), ``scale`` (seconds of simulated waiting per
  real second: 1e-4 makes the 2-minute default wait 12 ms).
- ``vm/calls.jsonl``: every call with its arguments, one JSON line each.

Every kernel of the VM reads the same folder, so two notebooks see one Drive.
``os.path.ismount`` answers for the mount point from the state (the real one asks the
kernel's mount table); colabkit's ``colab.drive.DRIVE_MOUNTPOINT`` is pointed at it.
"""
from __future__ import annotations

import json
import os
import posixpath
import socket
import sys
import time
import types
from pathlib import Path

DAY_MS = 24 * 60 * 60 * 1000
DEFAULTS = {"mounted": False, "browser": "answers", "drivefs": "ok", "flush": "ok",
            "stale": False, "scale": 1e-4}
_real_ismount = posixpath.ismount


class FakeColab:
    """One simulated Colab VM and its Drive (see the module docstring)."""

    def __init__(self, vm: str | os.PathLike):
        self.vm = Path(vm)
        self.mountpoint = str(self.vm / "content" / "drive")
        self.cloud = self.vm / "cloud"
        self.state_file = self.vm / "colab-state.json"
        self.calls_file = self.vm / "calls.jsonl"
        (self.vm / "content").mkdir(parents=True, exist_ok=True)
        self.cloud.mkdir(exist_ok=True)
        if not self.state_file.exists():
            self.set(**DEFAULTS)

    # ---- the test's side
    def state(self) -> dict:
        return {**DEFAULTS, **json.loads(self.state_file.read_text())}

    def set(self, **knobs) -> None:
        """Turn knobs (``browser="never"``, ``flush="fail"``, ...)."""
        state = {**DEFAULTS, **(json.loads(self.state_file.read_text()) if self.state_file.exists() else {}),
                 **knobs}
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.state_file)

    def calls(self) -> list[dict]:
        if not self.calls_file.exists():
            return []
        return [json.loads(line) for line in self.calls_file.read_text().splitlines() if line]

    def ismount(self, path) -> bool:
        """For the mount point: mounted and not dropped. A dropped FUSE mount fails
        ``lstat`` with ENOTCONN, and ``os.path.ismount`` answers False then."""
        if os.path.abspath(os.fspath(path)) == os.path.abspath(self.mountpoint):
            state = self.state()
            return state["mounted"] and not state["stale"]
        return _real_ismount(path)

    def _log(self, **call) -> None:
        with open(self.calls_file, "a", encoding="utf-8") as f:
            f.write(json.dumps(call) + "\n")

    def _wait(self, ms: float) -> None:
        time.sleep(ms / 1000 * self.state()["scale"])

    def _move(self, src: Path, dst: Path) -> None:
        dst.mkdir(parents=True, exist_ok=True)
        for entry in list(src.iterdir()):
            os.replace(entry, dst / entry.name)

    # ---- google.colab.drive
    def mount(self, mountpoint, force_remount=False, timeout_ms=120000, readonly=False):
        """drive.mount -> _mount (drive.py, ``def mount`` and ``def _mount``)."""
        self._log(call="mount", mountpoint=str(mountpoint), force_remount=force_remount,
                  timeout_ms=timeout_ms, readonly=readonly)
        state = self.state()
        if state.get("outside"):  # _mount: no /var/colab/hostname
            raise NotImplementedError("Mounting drive is unsupported in this environment.")
        if " " in str(mountpoint):  # _mount: checked before anything else
            raise ValueError("Mountpoint must not contain a space.")
        # _mount, ephemeral=True: _message.blocking_request('request_auth', ...,
        # timeout_sec=timeout_ms / 1000) on every call, mounted or not. The browser shows
        # a dialog; with no tab nobody answers and read_reply_from_input returns None at
        # the deadline: no error, the mount goes on.
        answered = state["browser"] == "answers"
        if not answered:
            self._wait(timeout_ms)
            self._log(call="request_auth", answered=False, waited_ms=timeout_ms)
        mountpoint = os.path.expanduser(str(mountpoint))
        mp = Path(mountpoint)
        if mountpoint != self.mountpoint:
            raise AssertionError(f"the fake VM mounts only at {self.mountpoint}, not {mountpoint}")
        # _mount: already mounted means os.path.isdir(mountpoint/'My Drive'); on a dropped
        # mount isdir fails with ENOTCONN, so that reads as not mounted
        if not force_remount and state["mounted"] and not state["stale"] and (mp / "My Drive").is_dir():
            print(f'Drive already mounted at {mountpoint}; to attempt to forcibly remount, '
                  f'call drive.mount("{mountpoint}", force_remount=True).')
            return
        # _mount: 'umount -f {mnt} || umount {mnt}; pkill -9 -x drive' before the checks
        if state["mounted"]:
            self._move(mp, self.cloud)
            self.set(mounted=False, stale=False)
        # _mount: the mount point's checks, after the unmount
        if mp.is_symlink():
            raise ValueError("Mountpoint must not be a symlink")
        if mp.is_dir() and os.listdir(mp):
            raise ValueError("Mountpoint must not already contain files")
        if not mp.is_dir() and mp.exists():
            raise ValueError("Mountpoint must either be a directory or not exist")
        if not mp.parent.exists():
            raise ValueError("Mountpoint must be in a directory that exists")
        # _mount: DriveFS not coming up ('drive EXITED', 'problem and has stopped', a bare
        # prompt) raises ValueError('mount failed' + reason). ASSUMED: without the access
        # the browser grants, DriveFS does not come up either.
        if state["drivefs"] != "ok" or not answered:
            # _mount: pexpect waits for DriveFS with timeout=timeout_ms / 1000 + 30 (s).
            # ASSUMED: a DriveFS that does not come up uses all of it
            self._wait(timeout_ms + 30_000)
            raise ValueError("mount failed")
        mp.mkdir(exist_ok=True)
        if not (self.cloud / "MyDrive").exists():
            (self.cloud / "MyDrive").mkdir()
            (self.cloud / "My Drive").symlink_to("MyDrive")  # DriveFS shows both names
        self._move(self.cloud, mp)
        self.set(mounted=True, stale=False)
        print(f"Mounted at {mountpoint}")

    def flush_and_unmount(self, timeout_ms=DAY_MS):
        """drive.flush_and_unmount (drive.py)."""
        self._log(call="flush_and_unmount", timeout_ms=timeout_ms)
        state = self.state()
        if state.get("outside"):  # /var/colab/mp exists
            raise NotImplementedError("google.colab.drive is unsupported in this environment.")
        # 'type fuse.drive' not in /bin/mount's output
        if not state["mounted"]:
            print("Drive not mounted, so nothing to flush and unmount.")
            return
        if state["flush"] == "stall":  # drive --push_changes_and_quit --timeout_sec=...
            self._wait(timeout_ms)
        # the drive binary quits; ASSUMED: also when it fails (a timeout, an upload error),
        # so the mount is gone either way
        self._move(Path(self.mountpoint), self.cloud)
        self.set(mounted=False, stale=False)
        if state["flush"] != "ok":  # p.returncode != 0
            raise ValueError("flush_and_unmount failed")

    def disconnect(self) -> None:
        """The VM is gone. Drive keeps what reached it (this fake has no upload lag: what
        was written reached Google); the next VM starts with Drive not mounted."""
        if self.state()["mounted"]:
            self._move(Path(self.mountpoint), self.cloud)
        self.set(mounted=False, stale=False)

    # ---- installing it
    def module(self) -> types.ModuleType:
        drive = types.ModuleType("google.colab.drive")
        drive.mount, drive.flush_and_unmount = self.mount, self.flush_and_unmount
        drive.fake = self
        return drive

    def modules(self) -> dict:
        """The ``sys.modules`` entries that make ``import google.colab`` find this VM."""
        drive = self.module()
        google = types.ModuleType("google")
        colab = types.ModuleType("google.colab")
        colab.drive, google.colab = drive, colab
        return {"google": google, "google.colab": colab, "google.colab.drive": drive}


def install(vm: str | os.PathLike, host: str | None = None, boot_id: str | None = None) -> FakeColab:
    """Make this process (a notebook kernel) a Colab VM for good: ``google.colab`` is the
    fake, ``os.path.ismount`` knows its mount point, colabkit mounts there. ``host`` and
    ``boot_id``: what makes the VM another machine to colabkit's lease (its hostname and
    the kernel's boot id), so that a new VM after a disconnect is one."""
    fake = FakeColab(vm)
    sys.modules.update(fake.modules())
    os.path.ismount = fake.ismount
    import colabkit.colab.lease
    import colabkit.colab.drive

    colabkit.colab.drive.DRIVE_MOUNTPOINT = fake.mountpoint
    if host:
        socket.gethostname = lambda: host
    if boot_id:
        colabkit.colab.lease._boot_id = lambda: boot_id
    return fake

