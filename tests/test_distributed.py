"""colabkit.training.distributed: DDP under torchrun, 2 Gloo processes on the CPU, synthetic data;
and the two calls its error path relies on, each checked on its own."""
import inspect
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from colabkit.data.loader import DeviceLoader

from colabkit.data.sources import load_dataset
from colabkit.training.distributed import ERROR_KEY, Dist
from colabkit.experiments import Experiment
from colabkit.models import build_model
from colabkit.rundir.runs import DETERMINISTIC_FIELDS, read_metrics
from colabkit.training.loop import train

REPO = Path(__file__).resolve().parents[1]
# two workers on two cores: one OpenMP thread each, not two
pytestmark = pytest.mark.integration  # torchrun starts real processes
ENV = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
ARGS = ["--experiment", "da", "--dataset", "synthetic", "--width", "4", "--batch-size", "32",
        "--train-size", "192", "--test-size", "96", "--device", "cpu", "--quiet"]


def torchrun(run_dir, epochs, pause_at=None, marker=None, trap=None, env=None):
    """``torchrun ... -m colabkit train``; with ``pause_at=N`` each worker runs through
    tests/crash_child.py and rank 0 waits, to be killed, once N epochs are in metrics.csv;
    with ``trap=(kind, n, match)``, that trap of crash_child.py."""
    trap = trap or (("pause", pause_at, run_dir) if pause_at is not None else None)
    what = ["-m", "colabkit"] if trap is None else \
        [str(REPO / "tests" / "crash_child.py"), *map(str, trap)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           *what, "train", "--run-dir", str(run_dir), "--epochs", str(epochs), *ARGS]
    return subprocess.Popen(cmd, env={**ENV, "CRASH_MARKER": str(marker), **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("ddp") / "run"
    proc = torchrun(run, 3)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    return run, out


def _descendants(pid):
    """Process ids of every descendant of ``pid`` (from /proc), children first."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def _evaluate(run):
    """Accuracy (%) of last.pt evaluated in one process, on the run's test split."""
    state = torch.load(run / "last.pt", weights_only=True)
    cfg = Experiment.from_dict(state["config"])
    data = load_dataset(cfg.dataset, seed=cfg.seed).subset(cfg.train_size, cfg.test_size, cfg.seed)
    model = build_model(cfg.model, data.num_classes, width=cfg.width)
    model.load_state_dict(state["model"])  # strict: no "module." prefixes
    model.eval()
    loader = DeviceLoader(data.x_test, data.y_test, 50, mean=data.mean, std=data.std)
    with torch.no_grad():
        correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in loader.epoch(0))
    return 100.0 * correct / len(data.y_test)


def test_ddp_run_finishes_with_one_row_per_epoch(ddp_run):
    run, out = ddp_run
    rows = read_metrics(run / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert out.count(': finished, 3/3 epochs, best test accuracy') == 1  # rank 0 alone reports
    state = torch.load(run / "last.pt", weights_only=True)
    assert state["world_size"] == 2 and not any(k.startswith("module.") for k in state["model"])


def test_saved_weights_in_one_process_give_the_logged_test_accuracy(ddp_run):
    run, _ = ddp_run
    assert _evaluate(run) == pytest.approx(read_metrics(run / "metrics.csv")[-1]["test_acc"])


def test_ddp_run_killed_and_restarted_under_torchrun_resumes(ddp_run, tmp_path):
    ref, _ = ddp_run
    run = tmp_path / "run"
    marker = tmp_path / "paused"
    proc = torchrun(run, 3, pause_at=1, marker=marker)  # killed once epoch 1 is logged
    deadline = time.time() + 600  # ends a hung test only; no result depends on it
    while not marker.exists():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[0][-3000:]
        time.sleep(0.02)
    # torchrun and both workers (which run in sessions of their own), by process id
    family = [proc.pid, *_descendants(proc.pid)]
    assert len(family) >= 3, family
    for pid in family:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    assert len(read_metrics(run / "metrics.csv")) == 1
    proc = torchrun(run, 3)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    env = json.loads((run / "environment.json").read_text())
    assert env["world_size"] == 2 and env["resumed_from_epoch"] >= 1
    det = lambda rows: [{k: r[k] for k in DETERMINISTIC_FIELDS} for r in rows]
    assert det(read_metrics(run / "metrics.csv")) == det(read_metrics(ref / "metrics.csv"))


def test_single_process_continues_a_ddp_run_with_a_note(ddp_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(ddp_run[0], run)
    cfg = Experiment.from_dict(torch.load(run / "last.pt", weights_only=True)["config"])
    from dataclasses import replace
    res = train(replace(cfg, epochs=4, milestones=cfg.schedule), run)  # the same steps, kept
    assert res["epochs_done"] == 4
    assert "saved with 2 process(es) and continues with 1" in capsys.readouterr().out


@pytest.mark.parametrize("rank", [0, 1])
def test_an_error_on_one_rank_ends_every_rank_and_rank_0_names_it(tmp_path, rank):
    """One rank raises in its 8th step (epoch 2, 6 steps an epoch) while the other waits in
    the step's all-reduce: every process ends (not at the backend's timeout), and rank 0's
    output names the error whichever rank raised it."""
    marker = tmp_path / "raised"
    proc = torchrun(tmp_path / "run", 3, marker=marker, trap=("raise", 8, rank))
    out, _ = proc.communicate(timeout=600)  # ends a hung test only; no result depends on it
    ended = time.time()
    assert proc.returncode != 0 and marker.exists(), out[-3000:]
    assert _descendants(proc.pid) == []
    cause = f"RuntimeError: planted failure on rank {rank}"
    if rank == 1:  # rank 0 says it, in one line: which rank, what error, what to do
        assert f"error: rank 1: {cause}. Every process of this run stops; run the same " \
               "command again to resume from the last checkpoint." in out, out[-3000:]
    else:  # rank 0's own traceback
        assert cause in out, out[-3000:]
    assert [r["epoch"] for r in read_metrics(tmp_path / "run" / "metrics.csv")] == [1]
    print(f"rank {rank} raised; every rank had ended {ended - float(marker.read_text()):.1f} s later")


def test_rank_0_ended_by_another_ranks_error_mirrors_and_lets_go_of_the_lease(tmp_path):
    """Rank 1 raises in epoch 3 (its 14th step) while rank 0 waits for it in a collective:
    rank 0's watcher ends it, as a kill would, but first closes the run as a stop does.
    Drive (mirrored at epoch 1 only, on a 10-minute cadence) receives epoch 2, and the
    lease is let go, so the next start is not refused."""
    drive, local = tmp_path / "drive", tmp_path / "local"
    run = drive / "runs" / "w"
    proc = torchrun(run, 4, marker=tmp_path / "raised", trap=("raise", 14, 1),
                    env={"COLABKIT_DRIVE": str(drive), "COLABKIT_LOCAL": str(local)})
    out, _ = proc.communicate(timeout=600)  # ends a hung test only
    assert proc.returncode != 0 and "error: rank 1: RuntimeError: planted failure" in out, out[-3000:]
    assert [r["epoch"] for r in read_metrics(run / "metrics.csv")] == [1, 2], out[-3000:]
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 2
    lease = json.loads((run / "lease.json").read_text()) if (run / "lease.json").exists() else None
    assert lease is None or lease.get("released"), lease


def test_the_default_groups_store_is_there_as_dist_takes_it(tmp_path, monkeypatch):
    """torch has no public way to the default process group's key-value store, through which
    Dist tells every rank of another's error: it takes torch's private
    ``distributed_c10d._get_default_store()``. This fails the day torch renames or changes
    it (Dist then needs another way, such as a TCPStore of its own): a one-process Gloo
    group, Dist on it as one of two ranks, and an error told through the store."""
    get = torch.distributed.distributed_c10d._get_default_store
    assert all(p.default is not p.empty for p in inspect.signature(get).parameters.values())
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'group'}",
                                         rank=0, world_size=1)
    monkeypatch.setenv("WORLD_SIZE", "2")  # Dist takes the store only with more than one rank
    try:
        dist = Dist(torch.device("cpu"))
        assert isinstance(dist._store, torch.distributed.Store)
        dist.fail(RuntimeError("boom"))
        assert dist._store.check([ERROR_KEY])  # written; get() would wait for it otherwise
        assert dist._store.get(ERROR_KEY) == b"rank 0: RuntimeError: boom"
        dist.close()
    finally:
        torch.distributed.destroy_process_group()


def test_close_waits_for_the_watcher_to_leave_the_store_before_the_group_goes(tmp_path, monkeypatch):
    """A rank's watcher thread calls the group's store every 0.2 s; close() must not tear
    the group down while it is inside such a call (a finished rank then died of SIGABRT,
    "terminate called without an active exception"). A store whose check takes 0.5 s:
    close() returns only after that call has returned."""
    import threading

    class SlowStore:
        def __init__(self):
            self.entered, self.left = threading.Event(), threading.Event()

        def check(self, keys):
            self.entered.set()
            time.sleep(0.5)
            self.left.set()
            return False

    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'group'}",
                                         rank=0, world_size=1)
    monkeypatch.setenv("WORLD_SIZE", "2")  # Dist watches the store only with more than one rank
    try:
        dist = Dist(torch.device("cpu"))
        dist._store = store = SlowStore()
        assert store.entered.wait(5)
        dist.close()
        assert store.left.is_set()
    finally:
        torch.distributed.destroy_process_group()


def test_a_thread_ends_its_process_at_once_while_the_main_thread_is_blocked():
    """How a rank leaves a collective that never returns: its watcher thread calls
    ``os._exit``, which ends the process from any thread, with no cleanup."""
    script = ("import os, threading, time\n"
              "threading.Thread(target=lambda: (time.sleep(0.2), os._exit(1))).start()\n"
              "threading.Event().wait(60)  # blocked, as in a collective\n")
    start = time.monotonic()
    assert subprocess.run([sys.executable, "-c", script], timeout=30).returncode == 1
    assert time.monotonic() - start < 10
