"""colabkit.sweeps, colabkit.report.status: The queue of the report's four runs, the status of run folders, and version pinning."""
import json
import re
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

import colabkit

from colabkit.rundir.checkpoint import CHECKSUM_KEY, content_hash
from colabkit.report.status import status_table
from colabkit.rundir.runs import read_metrics, write_json, write_metrics
from colabkit.experiments import QUEUE
from colabkit.colab.lease import Lease, start_ticks
from colabkit.report.status import queue_status
from colabkit.sweeps import run_queue
from colabkit.training.loop import train


def _rows(n, seconds=60.0, end=None):
    end = time.time() if end is None else end
    from datetime import datetime, timezone
    return [{"epoch": e, "lr": 0.1, "train_loss": 1.0, "train_acc": 50.0, "test_loss": 1.0,
             "test_acc": 50.0, "seconds": seconds, "images_per_s": 1.0,
             "time": datetime.fromtimestamp(end - (n - e) * seconds, timezone.utc).isoformat()}
            for e in range(1, n + 1)]


def _craft(folder, done, epochs=10, lease_pid=None, heartbeat_age=0.0):
    folder.mkdir(parents=True)
    write_json(folder / "config.json", {"name": "basic", "epochs": epochs})
    write_metrics(folder / "metrics.csv", _rows(done))
    if lease_pid is not None:
        me = Lease(folder / "lease.json").me
        (folder / "lease.json").write_text(json.dumps({**me, "id": "x", "pid": lease_pid,
                                                       "start": start_ticks(lease_pid),
                                                       "heartbeat_unix": time.time() - heartbeat_age}))


def test_status_of_finished_running_stalled_stopped_and_absent_runs(tmp_path):
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        _craft(tmp_path / "a_finished", 10)
        _craft(tmp_path / "b_running", 4, lease_pid=alive.pid, heartbeat_age=30)
        # alive on this machine, however silent: running (a new trainer is refused)
        _craft(tmp_path / "c_silent", 4, lease_pid=alive.pid, heartbeat_age=3600)
        _craft(tmp_path / "d_dead", 4, lease_pid=dead.pid, heartbeat_age=1)
        _craft(tmp_path / "e_stopped", 6)
        table = status_table(tmp_path, ["a_finished", "b_running", "c_silent", "d_dead",
                                        "e_stopped", "f_absent"])
    finally:
        alive.kill()
        alive.wait()
    assert list(table["state"]) == ["finished", "running", "running", "stalled", "stopped",
                                    "not started"]
    assert list(table["epochs_done"]) == [10, 4, 4, 4, 6, 0]
    assert table["hours_left"].iloc[0] == 0
    assert table["hours_left"].iloc[1] == pytest.approx(6 * 60 / 3600)  # 6 epochs of 60 s
    assert isinstance(table["last_update"].iloc[1], str) and pd.isna(table["last_update"].iloc[5])


@pytest.mark.parametrize("where,age,expected", [
    ("other-vm", 200, "running"),     # within 3 epoch times
    ("other-vm", 450, "running"),     # past 3 epoch times, within them plus Drive's lag
    ("other-vm", 700, "stalled"),     # past both
    ("alive here", 3600, "running"),  # a live process of this machine, however silent
    ("dead here", 1, "stalled"),      # a dead process of this machine
])
def test_the_status_says_stalled_exactly_when_a_new_trainer_takes_the_folder(tmp_path, where, age, expected):
    """One liveness rule (``Lease.stalled``): the table cannot say "stalled" of a folder
    whose lease still refuses a new trainer, nor "running" of one it would give up. Epochs
    of 100 s: the status once called a holder silent after 300 s, the lease after 600 s."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    if where == "dead here":
        other.kill()
        other.wait()
    folder = tmp_path / "r"
    try:
        _craft(folder, 4, lease_pid=other.pid, heartbeat_age=age)
        lease = folder / "lease.json"
        record = json.loads(lease.read_text())
        if where == "other-vm":
            record.update(host="other-vm", boot_id="other-boot", pid=1)
        lease.write_text(json.dumps({**record, "epoch_seconds": 100.0}))
        write_metrics(folder / "metrics.csv", _rows(4, seconds=100.0))
        state = status_table(tmp_path, ["r"])["state"].iloc[0]
        try:
            Lease(lease).acquire()
            taken = True
        except colabkit.LeaseHeld:
            taken = False
    finally:
        other.kill()
        other.wait()
    assert state == expected and taken == (state == "stalled")


def test_queue_estimates_time_left_of_a_run_not_started_from_the_others(tmp_path):
    _craft(tmp_path / f"{QUEUE[0][0]}-10ep", 3, epochs=10)  # a 10-epoch queue's folder
    table = queue_status(tmp_path, epochs=10)
    assert list(table["state"]) == ["stopped", "not started", "not started", "not started"]
    assert list(table["experiment"]) == [preset for _, preset in QUEUE]  # not None before a start
    assert table["hours_left"].iloc[1] == pytest.approx(10 * 60 / 3600)


def test_queue_skips_the_finished_and_continues_within_one_budget(tmp_path, capsys):
    settings = dict(dataset="synthetic", epochs=2, batch_size=32, width=4, train_size=64,
                    test_size=32, device="cpu")
    first = run_queue(tmp_path, runs=QUEUE[:2], **settings)
    assert [r["status"] for r in first] == ["finished", "finished"]
    first_run = tmp_path / f"{QUEUE[0][0]}-2ep"  # not the recipe's length: named so
    stamp = (first_run / "last.pt").stat().st_mtime_ns
    # a longer queue, no time left: the finished are skipped, the rest wait for later
    later = run_queue(tmp_path, runs=QUEUE[:3], max_minutes=1e-9, **settings)
    assert [r["status"] for r in later] == ["finished", "finished", "not reached"]
    assert (first_run / "last.pt").stat().st_mtime_ns == stamp
    out = capsys.readouterr().out
    assert "not started" in out and "finished" in out


def test_a_resumed_run_of_another_colabkit_version_warns_naming_both(tiny, tmp_path):
    train(tiny("basic", epochs=1), tmp_path, progress=False)
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert state["colabkit"]["version"] == __import__("colabkit").__version__
    state["colabkit"] = {"version": "0.1.9", "commit": "0123456789abcdef"}
    state[CHECKSUM_KEY] = content_hash(state)
    torch.save(state, tmp_path / "last.pt")
    with pytest.warns(UserWarning, match=r"trained with colabkit 0\.1\.9 \(0123456789\) and continues "
                                         rf"with colabkit {re.escape(colabkit.__version__)}"):
        train(tiny("basic", epochs=2), tmp_path, progress=False)
    env = json.loads((tmp_path / "environment.json").read_text())
    assert env["colabkit"] == colabkit.__version__ and "colabkit_commit" in env


def test_a_run_with_a_validation_split_logs_it_and_picks_best_on_it(tiny, tmp_path):
    res = train(tiny("basic", epochs=3, val_size=32), tmp_path, progress=False)
    rows = read_metrics(tmp_path / "metrics.csv")
    assert all(r["val_acc"] is not None and r["val_loss"] is not None for r in rows)
    best = max(rows, key=lambda r: (r["val_acc"], -r["epoch"]))
    assert (res["best_epoch"], res["best_acc"], res["selected_on"]) == (best["epoch"], best["test_acc"], "val")
    state = torch.load(tmp_path / "best.pt", weights_only=True)
    assert state["epoch"] == best["epoch"] and state["selected_on"] == "val"
    env = json.loads((tmp_path / "environment.json").read_text())
    assert (env["train_images"], env["val_images"], env["test_images"]) == (128, 32, 64)


@pytest.mark.integration
def test_sweep_of_two_experiments_and_two_seeds_resumes_after_a_kill_and_skips_the_finished(tmp_path):
    import os
    import signal
    from pathlib import Path

    from colabkit.rundir.runs import read_metrics
    runs = tmp_path / "sweep"  # 3 epochs, not the recipe's 300: <experiment>-3ep-s<seed>
    cmd = [sys.executable, "-m", "colabkit", "sweep", "--experiments", "basic", "cbam", "--seeds",
           "0", "1", "--runs-dir", str(runs), "--dataset", "synthetic", "--epochs", "3",
           "--width", "4", "--batch-size", "32", "--train-size", "96", "--test-size", "48",
           "--device", "cpu", "--quiet", "--mirror-minutes", "0"]
    tests = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": str(tests.parent), "CRASH_MARKER": str(tmp_path / "paused")}
    # killed once basic-s0 has finished and basic-s1 has logged one epoch (an event, not a time)
    proc = subprocess.Popen([sys.executable, str(tests / "crash_child.py"), "pause", "1",
                             str(runs / "basic-3ep-s1"), *cmd[3:]], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 600  # ends a hung test only; no result depends on it
    while not (tmp_path / "paused").exists():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(read_metrics(runs / "basic-3ep-s0" / "metrics.csv")) == 3
    done = (runs / "basic-3ep-s0" / "last.pt").stat().st_mtime_ns
    assert len(read_metrics(runs / "basic-3ep-s1" / "metrics.csv")) == 1
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    for name in ("basic-3ep-s0", "basic-3ep-s1", "cbam-3ep-s0", "cbam-3ep-s1"):
        assert [r["epoch"] for r in read_metrics(runs / name / "metrics.csv")] == [1, 2, 3], name
        assert json.loads((runs / name / "config.json").read_text())["seed"] == int(name[-1])
    assert (runs / "basic-3ep-s0" / "last.pt").stat().st_mtime_ns == done
    assert again.stdout.count(": finished, best test accuracy") == 4


@pytest.mark.integration
def test_parallel_sweep_runs_children_and_collects_their_summaries(tmp_path):
    from colabkit.sweeps import sweep
    res = sweep(["basic"], [0, 1], tmp_path, parallel=2,
                cli_args=["--dataset", "synthetic", "--epochs", "1", "--width", "4", "--batch-size",
                          "32", "--train-size", "64", "--test-size", "32", "--device", "cpu"])
    assert [r["status"] for r in res] == ["finished", "finished"]
    assert [json.loads((tmp_path / f"basic-s{s}" / "config.json").read_text())["seed"] for s in (0, 1)] == [0, 1]


@pytest.mark.integration
@pytest.mark.timeout(300)  # ends a hung sweep only (a blocked child waits for ever); no result depends on it
def test_a_parallel_sweeps_child_printing_a_megabyte_neither_blocks_it_nor_hides_its_summary(
        tmp_path, monkeypatch):
    """A child that prints more than a pipe holds (64 KB), before its summary and after it,
    finishes, and the sweep returns each run's own summary: read back after the child
    exited from a pipe, the child blocked in its first write for ever."""
    import os
    import stat
    from pathlib import Path

    from colabkit.sweeps import sweep
    noisy = tmp_path / "noisy-python"  # the sweep's python: 1 MB, the real child, more output
    noisy.write_text(f"""#!/bin/sh
echo started >> "{tmp_path}/children"
"{sys.executable}" -c "import sys; sys.stdout.write(('{{noise}} ' + 'x' * 1023 + chr(10)) * 1024)"
"{sys.executable}" "$@"
code=$?
echo '}} trailing {{"x": 1}} {{'
exit $code
""")
    noisy.chmod(noisy.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(sys, "executable", str(noisy))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(Path(__file__).resolve().parents[1]), *filter(None, [os.environ.get("PYTHONPATH")])]))
    res = sweep(["basic"], [0, 1], tmp_path / "runs", parallel=2,
                cli_args=["--dataset", "synthetic", "--epochs", "1", "--width", "4", "--batch-size",
                          "32", "--train-size", "64", "--test-size", "32", "--device", "cpu"])
    assert (tmp_path / "children").read_text() == "started\n" * 2
    for seed, r in zip((0, 1), res):
        folder = tmp_path / "runs" / f"basic-s{seed}"
        row, = torch.load(folder / "last.pt", weights_only=True)["history"]  # this run's own
        assert r["status"] == "finished", r
        assert (r["run_dir"], r["epochs_done"]) == (str(folder), 1)
        assert (r["best_acc"], r["train_seconds"]) == (row["test_acc"], row["seconds"])


def test_a_childs_summary_is_found_in_whatever_it_printed_around_it():
    """The last JSON object with a status, not the first brace: a child's own output may
    hold braces, objects and JSON before and after the summary."""
    from colabkit.sweeps import _child_summary
    summary = {"run_dir": "r/basic-s0", "status": "finished", "best_acc": 12.5}
    out = ("{noise} {'a': 1}\n" + json.dumps({"status": "a log line"}) + "\n"
           + json.dumps(summary, indent=2) + "\n} trailing {\n" + json.dumps([{"x": 1}]))
    assert _child_summary(out) == summary
    assert _child_summary("x" * 100_000 + "{") is None
    assert _child_summary("") is None


def test_a_queue_on_drive_flushes_once_at_its_end_and_a_failed_flush_does_not_stop_it(fake_colab):
    from colabkit.colab import drive
    home = drive.mount_drive()
    fake_colab.set(flush="fail")
    settings = dict(dataset="synthetic", epochs=1, batch_size=32, width=4, train_size=64,
                    test_size=32, device="cpu", mirror_minutes=0)
    with pytest.warns(UserWarning) as said:
        res = run_queue(home / "runs", runs=QUEUE[:2], progress=False, **settings)
    assert [r["status"] for r in res] == ["finished", "finished"]
    assert [c["call"] for c in fake_colab.calls()] == ["mount", "flush_and_unmount", "mount"]
    said = [str(w.message) for w in said]
    assert len(said) == 1 and said[0].startswith("Drive: drive.flush_and_unmount failed")
    assert "at the end of the queue" in said[0] and "colabkit.flush_drive()" in said[0]
    for name, _ in QUEUE[:2]:
        assert Lease(home / "runs" / name / "lease.json").holder() is None
