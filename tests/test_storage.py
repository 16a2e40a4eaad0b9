"""colabkit.colab.storage, colabkit.colab.lease, colabkit.colab.places: Google Drive as it behaves, simulated: a folder given the Drive policy by
COLABKIT_DRIVE, a local working area in COLABKIT_LOCAL, and the faults of a Drive mount
(ENOTCONN, EIO, ENOSPC, 0-byte files after a lost upload, a second runtime)."""
import errno
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from colabkit.rundir import files
from colabkit.colab import drive as colab_drive  # the fixture below is named drive
from colabkit.rundir.checkpoint import find_latest, read_checkpoint
from colabkit.rundir.runs import DETERMINISTIC_FIELDS, read_json, read_metrics, read_predictions
from colabkit.colab.lease import Lease, LeaseHeld, start_ticks
from colabkit.colab.storage import RunStorage
from colabkit.colab.places import is_drive
from colabkit.training.loop import train

HERE = Path(__file__).parent

# every file-system event that removes or replaces a file, while a test listens
_EVENTS: list | None = None


def _audit(event, args):
    if _EVENTS is None or event not in ("os.rename", "os.remove"):
        return
    victim = args[1] if event == "os.rename" else args[0]
    try:
        size = os.stat(victim).st_size
    except (OSError, TypeError, ValueError):
        return
    _EVENTS.append((event, str(victim), size))


sys.addaudithook(_audit)


@pytest.fixture
def drive(tmp_path, monkeypatch):
    """(drive folder, local area): the first has the Drive policy."""
    d, local = tmp_path / "drive", tmp_path / "local"
    d.mkdir()
    monkeypatch.setenv("COLABKIT_DRIVE", str(d))
    monkeypatch.setenv("COLABKIT_LOCAL", str(local))
    return d, local


@pytest.fixture
def listen():
    global _EVENTS
    _EVENTS = []
    yield _EVENTS
    _EVENTS = None


def _det(rows):
    return [{k: r[k] for k in DETERMINISTIC_FIELDS} for r in rows]


def _weights(path):
    return read_checkpoint(path)["model"]


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_drive_policy_applies_below_the_configured_folders(drive, tmp_path, monkeypatch):
    d, _ = drive
    assert is_drive(d / "runs" / "x") and not is_drive(tmp_path / "elsewhere")
    monkeypatch.setattr(colab_drive, "DRIVE_MOUNTPOINT", str(tmp_path / "content" / "drive"))
    assert is_drive(tmp_path / "content" / "drive" / "MyDrive" / "runs")


def test_no_large_file_on_drive_is_removed_or_replaced_without_being_emptied(tiny, drive, listen):
    d, local = drive
    run = d / "runs" / "basic"
    # width 12: checkpoints of 3 MB and a best.pt of 1.6 MB, over the 1 MB line
    res = train(tiny("basic", epochs=6, width=12), run, progress=False, mirror_minutes=0)
    assert res["epochs_done"] == 6
    on_drive = [(e, p, size) for e, p, size in listen if p.startswith(str(d))]
    big = [x for x in on_drive if x[2] > files.BIG]
    assert big == [], big
    assert (run / "last.pt").stat().st_size > files.BIG and (run / "best.pt").stat().st_size > files.BIG
    renames = [x for x in on_drive if x[0] == "os.rename"]
    assert len(renames) >= 6  # the rotation really ran on every mirror
    trash = sum(size for _, _, size in on_drive)
    assert trash < 200_000  # only small files (metrics.csv, config, lease) ever reach Trash
    # the Drive folder is a whole run folder: it alone resumes and reports
    assert read_checkpoint(run / "last.pt")["epoch"] == 6 and read_checkpoint(run / "last.prev.pt")["epoch"] == 5
    assert [r["epoch"] for r in read_metrics(run / "metrics.csv")] == list(range(1, 7))
    assert read_json(run / "config.json")["width"] == 12
    assert (local / "basic" / "last.pt").is_file()  # trained from the local working copy


def test_newest_checkpoint_that_verifies_wins_between_local_and_drive(tiny, drive, tmp_path, reference_run):
    d, local = drive
    exp = tiny("basic", epochs=3)
    ref = reference_run(exp)
    run = d / "runs" / "r"
    train(tiny("basic", epochs=2), run, progress=False, mirror_minutes=0)
    # a lost upload: Drive's newest checkpoint is 0 bytes; the local copy is newer
    (run / "last.pt").write_bytes(b"")
    with pytest.warns(UserWarning, match=r"skipping checkpoint: .*drive.*last\.pt is empty"):
        res = train(exp, run, progress=False, mirror_minutes=0)
    assert [r["epoch"] for r in res["history"]] == [1, 2, 3]
    assert read_json(run / "environment.json")["resumed_from_epoch"] == 2  # the local copy won
    assert _same(_weights(run / "last.pt"), _weights(ref / "last.pt"))
    # a new VM whose local copy is older than Drive: Drive wins
    exp4 = tiny("basic", epochs=4)
    stale = tmp_path / "stale"
    shutil.copytree(local / "r", stale)
    train(exp4, run, progress=False, mirror_minutes=0)
    shutil.rmtree(local / "r")
    shutil.copytree(stale, local / "r")  # epoch 3 locally, 4 on Drive
    res = train(tiny("basic", epochs=5), run, progress=False, mirror_minutes=0)
    assert read_json(run / "environment.json")["resumed_from_epoch"] == 4  # Drive won
    assert _det(res["history"]) == _det(train(tiny("basic", epochs=5), tmp_path / "plain",
                                              progress=False)["history"])


@pytest.fixture
def reference_run(tmp_path_factory):
    def get(exp):
        d = tmp_path_factory.mktemp("ref")
        train(exp, d, progress=False)
        return d
    return get


@pytest.mark.parametrize("code", [errno.ENOTCONN, errno.EIO, errno.ENOSPC])
def test_drive_faults_never_stop_training_and_drive_catches_up(tiny, drive, monkeypatch, capsys, code):
    d, local = drive
    run = d / "runs" / "f"
    fault = {"on": False}
    real_open = open

    def drive_open(file, *a, **k):
        if fault["on"] and str(file).startswith(str(d)):
            raise OSError(code, os.strerror(code))
        return real_open(file, *a, **k)

    monkeypatch.setattr(files, "open", drive_open, raising=False)

    def toggle(row, history):  # Drive drops after epoch 1 and is back after epoch 4
        fault["on"] = row["epoch"] in (1, 2, 3)

    with pytest.warns(UserWarning) as said:
        res = train(tiny("basic", epochs=6), run, progress=False, mirror_minutes=0, on_epoch=toggle)
    said = [str(w.message) for w in said]
    assert sum("could not copy the run to Drive" in m for m in said) == 1  # once, not per epoch
    assert all("could not copy the run to Drive" in m or "could not renew the lease" in m for m in said)
    assert res["status"] == "finished" and res["epochs_done"] == 6
    assert read_checkpoint(run / "last.pt")["epoch"] == 6
    assert [r["epoch"] for r in read_metrics(run / "metrics.csv")] == list(range(1, 7))
    out = capsys.readouterr().out
    assert "Drive is back" in out and "The Drive copy is up to date (epoch 6)" in out


def test_a_drive_that_stays_down_says_where_the_local_copy_is(tiny, drive, monkeypatch, capsys):
    d, local = drive
    run = d / "runs" / "down"
    real_open = open
    state = {"down": False}

    def drive_open(file, *a, **k):
        if state["down"] and str(file).startswith(str(d)):
            raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")
        return real_open(file, *a, **k)

    monkeypatch.setattr(files, "open", drive_open, raising=False)
    with pytest.warns(UserWarning) as said:
        train(tiny("basic", epochs=3), run, progress=False, mirror_minutes=0,
              on_epoch=lambda row, h: state.update(down=True))
    assert any("could not copy the run to Drive" in str(w.message) for w in said)
    out = capsys.readouterr().out
    assert "The Drive copy is behind: epoch 1 on Drive, epoch 3 in the local copy" in out
    assert str(local / "down") in out
    # next session, Drive works: it catches up before training (nothing left to train)
    state["down"] = False
    train(tiny("basic", epochs=3), run, progress=False, mirror_minutes=0)
    assert read_checkpoint(run / "last.pt")["epoch"] == 3
    assert len(read_metrics(run / "metrics.csv")) == 3


def test_mirror_cadence_copies_at_the_end_even_when_no_interval_passed(tiny, drive):
    d, _ = drive
    run = d / "runs" / "c"
    train(tiny("basic", epochs=3), run, progress=False, mirror_minutes=1e6)
    assert read_checkpoint(run / "last.pt")["epoch"] == 3
    assert read_checkpoint(run / "last.prev.pt")["epoch"] == 1  # start mirror, then the end's


def test_end_of_run_releases_the_lease_then_flushes_drive_the_way_colab_uploads_it(tiny, fake_colab):
    home = colab_drive.mount_drive()
    assert is_drive(home)
    train(tiny("basic", epochs=1), home / "runs" / "x", progress=False)
    assert [c["call"] for c in fake_colab.calls()] == ["mount", "flush_and_unmount", "mount"]
    assert [c["timeout_ms"] for c in fake_colab.calls()] == \
        [colab_drive.MOUNT_TIMEOUT_MS, colab_drive.FLUSH_TIMEOUT_MS, colab_drive.REMOUNT_TIMEOUT_MS]
    assert read_checkpoint(home / "runs" / "x" / "last.pt")["epoch"] == 1
    assert Lease(home / "runs" / "x" / "lease.json").holder() is None  # let go


@pytest.mark.parametrize("fault", ["flush", "remount"])
def test_a_failed_flush_or_remount_at_the_stop_is_one_warning_and_the_lease_is_released(
        tiny, fake_colab, capsys, fault):
    home = colab_drive.mount_drive()
    run = home / "runs" / "y"
    fake_colab.set(**({"flush": "fail"} if fault == "flush" else {"browser": "never"}))
    with pytest.warns(UserWarning) as said:
        res = train(tiny("basic", epochs=2), run, progress=False, mirror_minutes=0)
    assert res["status"] == "finished" and res["epochs_done"] == 2
    lines = [str(w.message) for w in said]
    assert len(lines) == 1 and "\n" not in lines[0], lines
    want = ("flush_and_unmount failed" if fault == "flush" else "the remount failed (mount failed)")
    assert lines[0].startswith(f"Drive: ") and want in lines[0] and "Drive has epoch 2" in lines[0]
    assert "run colabkit.mount_drive()" in lines[0] or "run colabkit.flush_drive()" in lines[0]
    assert "The Drive copy is up to date (epoch 2)" in capsys.readouterr().out
    fake_colab.set(browser="answers", flush="ok")
    home = colab_drive.mount_drive()
    assert Lease(run / "lease.json").holder() is None  # let go before the flush: it reached Drive
    assert read_checkpoint(run / "last.pt")["epoch"] == 2


def _best_epoch(rows):
    """The epoch a run selects (no validation split, no TTA: the highest test accuracy,
    the earliest of equals), computed from metrics.csv alone."""
    best = max(float(r["test_acc"]) for r in rows)
    return min(int(r["epoch"]) for r in rows if float(r["test_acc"]) == best)


def _forced_mounts(fake):
    return [c for c in fake.calls() if c["call"] == "mount" and c["force_remount"]]


@pytest.mark.parametrize("back, drop", [("at a mirror", "unmounted"), ("at the stop", "unmounted"),
                                        ("never", "unmounted"), ("at the stop", "stale")])
def test_the_night_drive_drops_after_epoch_1_and_comes_back_by_itself(
        tiny, fake_colab, capsys, monkeypatch, back, drop):
    """The report's night: Drive's mount drops after epoch 1's mirror and nobody is at the
    browser. The drop leaves the mount point an empty folder on the VM's disk
    ("unmounted"), or a dead FUSE mount (ENOTCONN: "stale"). After epoch 2 a remount works
    again ("at a mirror": attempts may follow each other at once; "at the stop": the
    backoff holds the next attempt back until the stop's last one), or it never does."""
    home = colab_drive.mount_drive()
    run = home / "runs" / "night"
    mp = Path(fake_colab.mountpoint)
    epochs = 4 if back == "at a mirror" else 3
    if back == "at a mirror":
        monkeypatch.setattr(colab_drive, "REMOUNT_FIRST_WAIT_S", 0.0)
        monkeypatch.setattr(colab_drive, "REMOUNT_SHARE", 1.0)  # no wait after an attempt
    left = {}

    def night(row, history):
        if row["epoch"] == 1:
            if drop == "unmounted":
                fake_colab.flush_and_unmount()
            fake_colab.set(browser="never", stale=drop == "stale")
        elif row["epoch"] == 2:
            left["mount point"] = sorted(p.name for p in mp.iterdir())  # after a failed attempt
            if back != "never":
                fake_colab.set(browser="answers")

    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        res = train(tiny("basic", epochs=epochs), run, progress=False, mirror_minutes=0,
                    on_epoch=night)
    said = [str(w.message) for w in said]
    out = capsys.readouterr().out
    assert res["epochs_done"] == epochs
    assert left["mount point"] == []  # nothing under the dead mount point, ever
    assert sum("could not copy the run to Drive" in m for m in said) == 1
    forced = _forced_mounts(fake_colab)
    assert all(c["timeout_ms"] == colab_drive.REMOUNT_TIMEOUT_MS for c in forced)
    # epoch 2's mirror tries; then epoch 3's ("at a mirror") or the stop's
    assert len(forced) == 2, forced
    local = fake_colab.vm / "content" / "colabkit-local" / "night"
    fake_colab.set(browser="answers")
    if back == "never":
        assert not any("flush" in c["call"] for c in fake_colab.calls()[2:])  # nothing to flush
        last = out.strip().splitlines()[-1]
        assert last == (f"The Drive copy is behind: epoch 1 on Drive, epoch {epochs} in the local "
                        f"copy {local}. Drive's mount is down: 2 attempt(s) to mount it again "
                        "failed (mount failed). Run again when Drive works: the copy catches up.")
        colab_drive.mount_drive()
        assert read_checkpoint(run / "last.pt")["epoch"] == 1
        assert [r["epoch"] for r in read_metrics(run / "metrics.csv")] == [1]
        return
    assert "Drive's mount had dropped: mounted again at" in out
    assert "Drive is back: the run is copied up to epoch 3" in out
    assert out.strip().splitlines()[-1] == f"The Drive copy is up to date (epoch {epochs})."
    # the stop: remount if down, mirror, then the lease released and Drive flushed
    calls = [c["call"] for c in fake_colab.calls()]
    assert calls[-2:] == ["flush_and_unmount", "mount"]
    assert Lease(run / "lease.json").holder() is None
    rows = read_metrics(run / "metrics.csv")
    assert [r["epoch"] for r in rows] == list(range(1, epochs + 1))
    assert read_checkpoint(run / "last.pt")["epoch"] == epochs
    best = _best_epoch(rows)
    assert read_checkpoint(run / "best.pt")["epoch"] == best
    assert read_predictions(run / "predictions.npz")["epoch"] == best
    assert read_metrics(run / "metrics.csv") == read_metrics(local / "metrics.csv")


def test_a_night_without_drive_spends_at_most_one_percent_of_it_on_remount_attempts(
        fake_colab, monkeypatch):
    """Eight hours of 60-second epochs, a mirror after each, Drive down all night and
    nobody at the browser: each attempt waits REMOUNT_TIMEOUT_MS for an answer, then that
    again and 30 s for DriveFS (drive.py's pexpect timeout), on a clock that only the waits
    and the epochs move. The attempts back off, and the time they take is at most 1% of
    the night, plus the stop's last attempt."""
    colab_drive.mount_drive()
    fake_colab.flush_and_unmount()
    fake_colab.set(browser="never", scale=0.0)
    clock = [0.0]
    real_mount = sys.modules["google.colab.drive"].mount

    def mount(*args, **kwargs):
        clock[0] += (2 * kwargs["timeout_ms"] + 30_000) / 1000  # nobody answers; no DriveFS
        return real_mount(*args, **kwargs)

    monkeypatch.setattr(sys.modules["google.colab.drive"], "mount", mount)
    remount = colab_drive.Remount(clock=lambda: clock[0])
    night, epoch, tries = 8 * 3600.0, 60.0, []
    while clock[0] < night:
        clock[0] += epoch
        before = clock[0]
        assert not remount()
        if clock[0] > before:
            tries.append(before)
    cost = (2 * colab_drive.REMOUNT_TIMEOUT_MS + 30_000) / 1000  # 150 s
    spent = len(tries) * cost
    assert spent == remount.spent_s and len(_forced_mounts(fake_colab)) == len(tries)
    assert spent <= 0.01 * clock[0] + cost, (len(tries), spent)
    gaps = [b - a for a, b in zip(tries, tries[1:])]
    assert len(tries) >= 2 and min(gaps) >= 100 * cost  # each attempt waits 99 times its cost
    assert not remount(force=True) and len(_forced_mounts(fake_colab)) == len(tries) + 1
    fake_colab.set(browser="answers")
    assert remount(force=True) and (remount.attempts, remount.spent_s) == (0, 0.0)
    print(f"{len(tries)} attempts in {clock[0] / 3600:.1f} h: {spent / 60:.0f} min "
          f"({100 * spent / clock[0]:.2f}% of the night)")


def test_on_a_time_cadence_drive_gets_the_best_epochs_checkpoint_and_predictions(
        tiny, drive, monkeypatch):
    """Mirrors at epoch 1 and at the stop only. The best epoch (2) falls between them and
    the epochs after it are no best: Drive still ends with epoch 2's best.pt and the
    predictions.npz of that same epoch, as in the working copy."""
    d, local = drive
    loop = sys.modules["colabkit.training.loop"]
    real = loop.train_and_evaluate
    scripted = {1: 10.0, 2: 50.0, 3: 30.0, 4: 20.0}  # test accuracy, epoch by epoch

    def scripted_epoch(epoch, *args, **kwargs):
        row, preds = real(epoch, *args, **kwargs)
        return {**row, "test_acc": scripted[epoch]}, preds

    monkeypatch.setattr(loop, "train_and_evaluate", scripted_epoch)
    run = d / "runs" / "cadence"
    train(tiny("basic", epochs=4), run, progress=False, mirror_minutes=1e6)
    assert read_checkpoint(run / "last.prev.pt")["epoch"] == 1  # the first mirror, then the stop's
    assert read_checkpoint(run / "best.pt")["epoch"] == 2
    on_drive, kept = read_predictions(run / "predictions.npz"), read_predictions(local / "cadence" / "predictions.npz")
    assert on_drive["epoch"] == 2 and np.array_equal(on_drive["pred"], kept["pred"])
    assert np.array_equal(on_drive["label"], kept["label"])


def test_a_stop_whose_last_checkpoint_write_fails_still_releases_the_lease(tiny, drive, monkeypatch):
    """The local disk fills at the last epoch's checkpoint: the error reaches the caller,
    and the stop still closes the storage. The lease is let go, and Drive keeps the last
    checkpoint that verifies, with its metrics."""
    d, _ = drive
    saver = sys.modules["colabkit.training.saver"]
    real = saver.save_checkpoint

    def full(state, path, **kwargs):
        if state["epoch"] == 3 and Path(path).name == "last.pt":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(state, path, **kwargs)

    monkeypatch.setattr(saver, "save_checkpoint", full)
    run = d / "runs" / "full"
    with pytest.raises(OSError, match="No space left"):
        train(tiny("basic", epochs=3), run, progress=False, mirror_minutes=0)
    assert Lease(run / "lease.json").holder() is None
    state = read_checkpoint(run / "last.pt")  # verifies, or raises
    assert state["epoch"] == 2 and [r["epoch"] for r in read_metrics(run / "metrics.csv")] == [1, 2]


def test_a_drive_run_folder_without_its_mount_is_refused_before_anything_is_written(tiny, fake_colab):
    run = Path(fake_colab.mountpoint) / "MyDrive" / "colabkit" / "runs" / "w"
    with pytest.raises(colab_drive.DriveError, match=r"Drive is not mounted .*run colabkit.mount_drive\(\)"):
        train(tiny("basic", epochs=1), run, progress=False)
    assert not Path(fake_colab.mountpoint).exists()


def test_the_budget_leaves_time_for_the_flush(tiny, fake_colab, monkeypatch):
    train_module = sys.modules["colabkit.training.loop"]  # the module, not the function colabkit.train
    assert not train_module.over_budget(3300, [60.0], 60)  # 55 min + one epoch fit an hour ...
    assert train_module.over_budget(3300, [60.0], 60, reserve_s=360)  # ... not with the flush
    assert not train_module.over_budget(0, [60.0], 4, reserve_s=3600)  # at most a quarter
    home = colab_drive.mount_drive()
    assert RunStorage(home / "runs" / "b").stop_seconds() == \
        (colab_drive.FLUSH_TIMEOUT_MS + colab_drive.REMOUNT_TIMEOUT_MS) / 1000
    assert RunStorage(home / "runs" / "b").stop_seconds(flush=False) == 0
    seen = []
    real = train_module.over_budget
    monkeypatch.setattr(train_module, "over_budget", lambda *a: seen.append(a[3]) or real(*a))
    train(tiny("basic", epochs=2), home / "runs" / "b", progress=False, max_minutes=1e3)
    assert seen and set(seen) == {(colab_drive.FLUSH_TIMEOUT_MS + colab_drive.REMOUNT_TIMEOUT_MS) / 1000}


def test_mirroring_every_epoch_says_what_it_writes_to_drive_per_hour(tiny, drive, capsys):
    d, local = drive
    train(tiny("basic", epochs=2, width=12), d / "runs" / "m", progress=False, mirror_minutes=0)
    lines = [l for l in capsys.readouterr().out.splitlines() if "per hour" in l]
    assert len(lines) == 1 and lines[0].startswith("Mirroring to Drive every epoch (MIRROR_MINUTES = 0")
    mb = float(re.search(r"about (\d+) MB per mirror", lines[0]).group(1))
    first = read_checkpoint(d / "runs" / "m" / "last.prev.pt")  # what the first mirror copied
    assert first["epoch"] == 1
    size = (d / "runs" / "m" / "last.prev.pt").stat().st_size + (d / "runs" / "m" / "best.pt").stat().st_size
    assert mb == round(size / 1e6)  # epoch 1's checkpoint and best.pt
    assert float(re.search(r"([\d.]+) GB per hour", lines[0]).group(1)) > 0
    train(tiny("basic", epochs=2), d / "runs" / "n", progress=False, mirror_minutes=10)
    assert "per hour" not in capsys.readouterr().out


def test_quota_is_checked_at_every_mirror_not_only_at_the_stop(tiny, drive, monkeypatch):
    d, _ = drive
    from colabkit.colab import quota
    grown = {"used": 0}
    real = quota.usage
    monkeypatch.setattr(quota, "usage", lambda p: (real(p)[0] + grown["used"], real(p)[1]))
    counts = []
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")

        def fill(row, history):  # something fills Drive by 2 GB after epoch 1's mirror
            grown["used"] = 2 * 10 ** 9
            counts.append(sum("more than this run's own files" in str(w.message) for w in said))
        train(tiny("basic", epochs=3), d / "runs" / "q", progress=False, mirror_minutes=0,
              on_epoch=fill)
    assert counts == [0, 1, 1]  # said at epoch 2's mirror, long before the stop
    assert sum("more than this run's own files" in str(w.message) for w in said) == 1  # once


def test_space_shortage_is_a_warning_with_the_numbers(tiny, drive, monkeypatch):
    d, _ = drive
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    with pytest.warns(UserWarning) as said:
        train(tiny("basic", epochs=1), d / "runs" / "s", progress=False)
    said = [str(w.message) for w in said]
    assert any(re.search(r"^Drive at .* has 0\.00 GB free; this run needs about", m) for m in said)
    assert any(m.startswith("local disk at ") for m in said) and len(said) == 2


# ------------------------------------------------------------------ lease ----

def _foreign_lease(path, pid, host=None, age_minutes=0.0, boot_id=None, **extra):
    lease = Lease(path)
    record = dict(lease.me, id="someone-else", pid=pid, host=host or lease.me["host"],
                  boot_id=boot_id or lease.me["boot_id"], start=start_ticks(pid),
                  heartbeat="then", heartbeat_unix=time.time() - 60 * age_minutes, **extra)
    path.parent.mkdir(parents=True, exist_ok=True)
    import json
    path.write_text(json.dumps(record))


def test_a_second_trainer_is_refused_naming_the_holder(tiny, tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        # alive on this machine: refused however old its heartbeat (a kernel busy elsewhere)
        _foreign_lease(tmp_path / "lease.json", sleeper.pid, age_minutes=600, epoch_seconds=1.0)
        with pytest.raises(LeaseHeld, match=rf"being trained right now by another notebook or "
                                            rf"process on this runtime \(host .* pid {sleeper.pid},") as e:
            train(tiny("basic", epochs=1), tmp_path, progress=False)
        assert "tick TAKEOVER (takeover=True)" in str(e.value) and "--takeover" not in str(e.value)
        assert "pass --takeover" in e.value.cli() and "TAKEOVER" not in e.value.cli()
        assert not (tmp_path / "last.pt").exists()
        # another machine's lease without an epoch time: refused while fresh, taken over once stale
        _foreign_lease(tmp_path / "lease.json", 1, host="other-vm", age_minutes=5)
        with pytest.raises(LeaseHeld, match="host other-vm"):
            train(tiny("basic", epochs=1), tmp_path, progress=False)
        _foreign_lease(tmp_path / "lease.json", 1, host="other-vm", age_minutes=31)
        assert train(tiny("basic", epochs=1), tmp_path, progress=False)["epochs_done"] == 1
    finally:
        sleeper.kill()
        sleeper.wait()
    assert read_json(tmp_path / "lease.json")["released"] is True  # released at the end


def test_a_dead_vm_is_resumed_after_a_few_of_its_epoch_times_and_says_so(tiny, tmp_path, capsys):
    """A disconnect: the lease names another host and boot, heartbeat some minutes old, and
    the epoch time it measured. Refused (saying when it counts as gone) until 3 epoch
    times plus Drive's upload lag have passed; then resumed with no takeover."""
    from colabkit.colab.lease import STALE_EPOCHS, UPLOAD_LAG_S
    lease = tmp_path / "lease.json"
    limit_min = (STALE_EPOCHS * 60 + UPLOAD_LAG_S) / 60
    assert Lease(lease).limit_seconds({"epoch_seconds": 60}) == 480 == limit_min * 60
    _foreign_lease(lease, 1, host="old-vm", boot_id="old-boot", age_minutes=limit_min - 0.5,
                   epoch_seconds=60)
    with pytest.raises(LeaseHeld) as e:
        train(tiny("basic", epochs=1), tmp_path, progress=False)
    said = str(e.value)
    assert "by another runtime (host old-vm" in said and "Run all again in 30 s" in said
    assert "counts as gone after 8.0 min" in said and "3 of its epoch times of 60 s" in said
    assert "tick TAKEOVER (takeover=True) now" in said and "right now" not in said
    assert "pass --takeover now" in e.value.cli()
    _foreign_lease(lease, 1, host="old-vm", boot_id="old-boot", age_minutes=limit_min + 0.5,
                   epoch_seconds=60)
    assert train(tiny("basic", epochs=1), tmp_path, progress=False)["epochs_done"] == 1
    assert "has been silent for 8.5 min, longer than this run's limit of 8.0 min" in capsys.readouterr().out
    # the same host after a reboot is another machine too: the old boot's pid means nothing
    _foreign_lease(lease, os.getppid(), boot_id="old-boot", age_minutes=limit_min + 0.5,
                   epoch_seconds=60)
    assert train(tiny("basic", epochs=2), tmp_path, progress=False)["epochs_done"] == 2


def test_the_lease_records_the_runs_epoch_time(tiny, tmp_path):
    """What the stale limit follows: the longest recent heartbeat interval, at least the
    epoch's own seconds; a resumed run starts from its checkpoint's epoch times."""
    seen = []
    res = train(tiny("basic", epochs=3), tmp_path, progress=False,
                on_epoch=lambda row, h: seen.append(read_json(tmp_path / "lease.json")["epoch_seconds"]))
    rows = read_metrics(tmp_path / "metrics.csv")
    assert seen[0] == pytest.approx(rows[0]["seconds"], abs=1e-3)
    assert all(s >= r["seconds"] - 1e-3 for s, r in zip(seen, rows))
    seen.clear()
    train(tiny("basic", epochs=4), tmp_path, progress=False,
          on_epoch=lambda row, h: seen.append(read_json(tmp_path / "lease.json")["epoch_seconds"]))
    assert res["epochs_done"] == 3 and len(seen) == 1 and seen[0] >= max(r["seconds"] for r in rows) - 1e-3


def test_a_dead_holder_on_this_machine_is_taken_over(tiny, tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    _foreign_lease(tmp_path / "lease.json", gone.pid)
    assert train(tiny("basic", epochs=1), tmp_path, progress=False)["epochs_done"] == 1


@pytest.mark.integration
def test_takeover_makes_the_first_trainer_stop_without_writing(tmp_path):
    """The race seen under load, made certain: the trainer that takes over finds the run
    finished for its --epochs, so it releases the folder before the first trainer's next
    heartbeat. The first must still stop: a released lease names the last holder."""
    run = tmp_path / "run"
    marker = tmp_path / "paused"
    args = ["train", "--experiment", "basic", "--dataset", "synthetic", "--width", "4",
            "--batch-size", "32", "--train-size", "256", "--test-size", "64", "--device", "cpu",
            "--quiet", "--run-dir", str(run)]
    env = {**os.environ, "PYTHONPATH": str(HERE.parent), "PYTHONUNBUFFERED": "1"}
    # the first trainer stops (SIGSTOP) once epoch 1 is in metrics.csv, before its next heartbeat
    first = subprocess.Popen([sys.executable, str(HERE / "crash_child.py"), "pause", "1", str(run),
                              *args, "--epochs", "200"], env={**env, "CRASH_MARKER": str(marker),
                                                              "CRASH_PAUSE": "stop"},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(marker, first)
        second = subprocess.run([sys.executable, "-m", "colabkit", *args, "--epochs", "1",
                                 "--takeover"], env=env, capture_output=True, text=True, timeout=300)
        assert "Taking over" in second.stdout and second.returncode == 0, second.stderr
        assert read_json(run / "lease.json")["released"] is True
        first.send_signal(signal.SIGCONT)
        out, err = first.communicate(timeout=300)
    finally:
        first.kill()
    assert first.returncode == 2, (out, err)
    assert "was taken over by host" in err and "stops without writing" in err
    assert [r["epoch"] for r in read_metrics(run / "metrics.csv")] == [1]


def _wait_for(marker, proc, limit=600):
    """Until the child has written ``marker`` (it reached the event the test waits for).
    The limit only ends a test whose child died or hung; no result depends on it."""
    deadline = time.time() + limit
    while not marker.exists():
        assert proc.poll() is None, f"the child exited ({proc.returncode}) before the event"
        assert time.time() < deadline, "the child never reached the event"
        time.sleep(0.02)


# ------------------------------------------------------- kills, new VMs ----

def _cli(run, kill, epochs=8):
    return [sys.executable, str(HERE / "crash_child.py"), *kill, "train", "--experiment", "da",
            "--dataset", "synthetic", "--epochs", str(epochs), "--width", "4", "--batch-size", "32",
            "--train-size", "128", "--test-size", "64", "--run-dir", str(run), "--quiet",
            "--device", "cpu", "--mirror-minutes", "0"]


@pytest.mark.integration
def test_sigkill_anywhere_with_a_new_vm_each_time_ends_as_an_uninterrupted_run(tiny, drive, tmp_path):
    d, local = drive
    run = d / "runs" / "k"
    ref = tmp_path / "ref"
    train(tiny("da", epochs=8, milestones=None), ref, progress=False)
    env = {**os.environ, "PYTHONPATH": str(HERE.parent), "PYTHONUNBUFFERED": "1"}
    dr = str(run)
    # deaths aimed at each window of the scheme, on Drive (the mirror) and locally
    plan = [("replace", "4", f"{local}&last.next"),  # local install: next -> last
            ("replace", "2", f"{local}&metrics.csv"),  # local: checkpoint committed, log not
            ("replace", "1", f"{dr}&last.next"),   # mirror: new checkpoint not yet on Drive
            ("replace", "2", f"{dr}&last.prev"),   # mirror: between the two renames
            ("truncate", "1", f"{dr}&last.prev"),  # mirror: prev emptied, last not yet moved
            ("copyfileobj", "2", dr),              # mirror: mid-copy
            "steps", "steps"]
    rng = random.Random(7)
    deaths = 0
    for step in plan + ["finish"] * 3:
        shutil.rmtree(local, ignore_errors=True)  # every restart is a new VM
        if step == "finish":
            proc = subprocess.run(_cli(run, ("none", "0", "")), env=env, capture_output=True, text=True)
            assert proc.returncode == 0, proc.stderr[-3000:]
            break
        if step == "steps":  # a death at a random optimizer step of what is left to train
            done = find_latest(run / "last.pt", quiet=True)[0]["epoch"]  # the resume point
            step = ("step", str(rng.randint(1, 4 * (8 - done))), "")
        proc = subprocess.run(_cli(run, step), env=env, capture_output=True, text=True)
        deaths += proc.returncode == -signal.SIGKILL
        assert proc.returncode in (0, -signal.SIGKILL), proc.stderr[-3000:]
    assert deaths == len(plan)  # every planned death happened
    assert read_json(run / "environment.json")["resumed_from_epoch"] >= 1  # it resumed, not restarted
    assert _same(_weights(run / "last.pt"), _weights(ref / "last.pt"))
    assert _det(read_metrics(run / "metrics.csv")) == _det(read_metrics(ref / "metrics.csv"))
    # (f) no temporaries, nothing half-installed, on Drive or in the last local copy
    for folder in (run, local / "k"):
        left = [p.name for p in folder.iterdir() if files.is_temporary(p) or ".next." in p.name]
        assert left == [], left
    assert read_json(run / "lease.json")["released"] is True


def test_temporaries_of_this_and_earlier_versions_are_recognised_and_removed(tmp_path):
    from colabkit.rundir.files import remove_temporaries, temp_path
    keep = ["last.pt", "last.prev.pt", "metrics.csv", ".origin", ".tmpnotes"]
    for name in keep:
        (tmp_path / name).write_text("x")
    new = temp_path(tmp_path / "last.pt")
    new.write_bytes(b"\0" * (files.BIG + 10))
    old = tmp_path / ".last.pt.tmp4242"  # colabkit 0.1's name
    old.write_text("x")
    assert sorted(remove_temporaries(tmp_path)) == sorted([new.name, old.name])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep)


def test_a_dropped_mount_is_mounted_again_on_the_training_loops_thread(tiny, fake_colab, monkeypatch):
    """With the checkpoint writer on its own thread (as on a GPU), the mirrors run there,
    but google.colab's requests to the browser are not thread-safe: every attempt to mount
    Drive again is made on the training loop's thread, and Drive still catches up."""
    import threading

    home = colab_drive.mount_drive()
    run = home / "runs" / "bg"
    drive_module = sys.modules["google.colab.drive"]
    real, threads = drive_module.mount, []

    def mount(*args, **kwargs):
        threads.append(threading.current_thread() is threading.main_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(drive_module, "mount", mount)

    def drop(row, history):
        if row["epoch"] == 1:
            fake_colab.flush_and_unmount()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = train(tiny("basic", epochs=3), run, progress=False, mirror_minutes=0, on_epoch=drop,
                    background_save=True, flush=False)
    assert res["epochs_done"] == 3 and threads and all(threads), threads
    assert read_checkpoint(run / "last.pt")["epoch"] == 3
