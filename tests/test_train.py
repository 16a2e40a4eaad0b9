"""colabkit.training.loop, colabkit.training.resume, colabkit.training.saver, colabkit.training.epochs

train() learns, checkpoints, and resumes as if it had never stopped."""
import csv
import errno
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from colabkit.rundir import checkpoint as ck
from colabkit.data import loader as loader_mod
from colabkit.rundir import files
from colabkit.rundir.checkpoint import CheckpointError
from colabkit.rundir.runs import DETERMINISTIC_FIELDS, RunDir, RunFolderError, read_metrics
from colabkit.training.resume import ConfigMismatch
from colabkit.training.loop import train

HERE = Path(__file__).parent
ENV = {**os.environ, "PYTHONPATH": str(HERE.parent), "PYTHONUNBUFFERED": "1"}


def _weights(run_dir):
    return torch.load(Path(run_dir) / "last.pt", weights_only=True)["model"]


def _same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _det(rows):
    return [{k: r[k] for k in DETERMINISTIC_FIELDS} for r in rows]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run of an experiment, for comparisons: trained once per module (and
    xdist worker), for every test that only reads it."""
    cache = {}

    def get(exp):
        key = json.dumps(exp.to_dict(), sort_keys=True)
        if key not in cache:
            d = tmp_path_factory.mktemp("reference")
            res = train(exp, d, progress=False)
            cache[key] = (d, res)
        return cache[key]
    return get


def test_a_run_learns_and_writes_the_run_folder(tiny, tmp_path, reference):
    exp = tiny("da_cbam", epochs=3)
    run_dir, res = reference(exp)
    run = RunDir(run_dir)
    assert res["status"] == "finished" and res["epochs_done"] == 3
    for p in (run.config, run.environment, run.metrics, run.last, run.last_prev, run.best):
        assert p.is_file() and p.stat().st_size > 0, p
    rows = read_metrics(run.metrics)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert [r["lr"] for r in rows] == [0.1, 0.1, pytest.approx(0.01)]  # milestone (2,)
    assert rows[-1]["test_acc"] > 100 / 12 * 2  # well above chance on synthetic data
    best = max(rows, key=lambda r: r["test_acc"])
    assert (res["best_acc"], res["best_epoch"]) == (best["test_acc"], best["epoch"])
    assert torch.load(run.best, weights_only=True)["epoch"] == best["epoch"]


def test_every_checkpoint_loads_with_plain_weights_only_torch_load(tiny, reference):
    run = RunDir(reference(tiny("da_cbam", epochs=3))[0])
    for p in (run.last, run.last_prev, run.best):
        state = torch.load(p, weights_only=True)
        assert ck.content_hash(state) == state[ck.CHECKSUM_KEY]
    last = torch.load(run.last, weights_only=True)
    assert last["epoch"] == 3 and len(last["history"]) == 3 and last["config"]["model"] == "resnet18_cbam"


def _cli(run_dir, exp_args, kill=("none", "0", "")):
    return [sys.executable, str(HERE / "crash_child.py"), *kill, "train",
            "--run-dir", str(run_dir), "--quiet", "--device", "cpu", *exp_args]


@pytest.mark.integration
def test_resume_after_sigkill_in_every_window_of_a_checkpoint_matches_uninterrupted_run(tiny, tmp_path, reference):
    # the CLI run uses the preset's schedule (steps at thirds): so does the reference
    exp = tiny("da", epochs=8, milestones=None)
    ref_dir, _ = reference(exp)
    args = ["--experiment", "da", "--dataset", "synthetic", "--epochs", "8", "--width", "4",
            "--batch-size", "32", "--train-size", "128", "--test-size", "64"]
    run_dir = tmp_path / "run"
    # each kill lands after training started, in one window of the install of last.pt
    # (files.install: tmp -> last.next, prev emptied, last -> last.prev, last.next -> last),
    # of best.pt, or between the checkpoint's commit and metrics.csv's
    plan = [("replace", "1", "best.pt"),         # best.pt being installed (epoch 1 is best)
            ("replace", "1", "last.next"),       # bytes written, not yet named
            ("truncate", "1", "last.prev"),      # new one named .next; prev being emptied
            ("replace", "1", "last.prev"),       # last -> prev: .next and .prev hold the two
            ("replace", "2", "last.next"),       # .next -> last: the last step
            ("replace", "2", "metrics.csv"),     # checkpoint committed, metrics.csv not
            "steps", "steps"]
    rng = random.Random(1234)
    deaths = []
    for step in plan + ["finish"] * 3:
        before = len(read_metrics(run_dir / "metrics.csv"))
        if step == "finish":
            proc = subprocess.run(_cli(run_dir, args), env=ENV, capture_output=True, text=True)
            if proc.returncode == 0:
                break
            pytest.fail(proc.stderr[-2000:])
        if step == "steps":  # a death at a random optimizer step of what is left to train
            done = ck.find_latest(run_dir / "last.pt", quiet=True)[0]["epoch"]  # the resume point
            step = ("step", str(rng.randint(1, 4 * (8 - done))), "")
        code = subprocess.run(_cli(run_dir, args, step), env=ENV, capture_output=True).returncode
        deaths.append((step, code, before))
        assert code in (0, -signal.SIGKILL), deaths
    assert all(code == -signal.SIGKILL for _, code, _ in deaths), deaths  # each one happened
    assert json.loads((run_dir / "environment.json").read_text())["resumed_from_epoch"] >= 1
    assert _same_weights(_weights(run_dir), _weights(ref_dir))
    got, want = read_metrics(run_dir / "metrics.csv"), read_metrics(ref_dir / "metrics.csv")
    assert [r["epoch"] for r in got] == list(range(1, 9))
    assert _det(got) == _det(want)
    with open(run_dir / "metrics.csv") as f:  # bytes of the deterministic columns too
        a = [[r[k] for k in DETERMINISTIC_FIELDS] for r in csv.DictReader(f)]
    with open(ref_dir / "metrics.csv") as f:
        b = [[r[k] for k in DETERMINISTIC_FIELDS] for r in csv.DictReader(f)]
    assert a == b
    assert not [p.name for p in run_dir.iterdir() if p.name.startswith(".") or ".next." in p.name]


_REAL_EPOCH = loader_mod.DeviceLoader.epoch


def _interrupt_at(monkeypatch, epoch, batch):
    real = _REAL_EPOCH

    def epoch_fn(self, e):
        for i, item in enumerate(real(self, e)):
            if self.train and e == epoch and i == batch:
                raise KeyboardInterrupt
            yield item
    monkeypatch.setattr(loader_mod.DeviceLoader, "epoch", epoch_fn)


def test_keyboard_interrupt_mid_epoch_leaves_checkpoint_at_last_finished_epoch(tiny, tmp_path, monkeypatch, reference, capsys):
    exp = tiny("basic", epochs=4)
    _interrupt_at(monkeypatch, epoch=3, batch=2)
    res = train(exp, tmp_path, progress=False)
    assert res["status"] == "interrupted" and res["epochs_done"] == 2
    assert "Run the same command (or notebook) again to resume" in capsys.readouterr().out
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 2
    assert [r["epoch"] for r in read_metrics(tmp_path / "metrics.csv")] == [1, 2]
    monkeypatch.undo()
    res = train(exp, tmp_path, progress=False)
    ref_dir, _ = reference(exp)
    assert res["status"] == "finished" and _same_weights(_weights(tmp_path), _weights(ref_dir))
    assert _det(read_metrics(tmp_path / "metrics.csv")) == _det(read_metrics(ref_dir / "metrics.csv"))


def test_interrupt_with_time_cadence_still_saves_the_last_finished_epoch(tiny, tmp_path, monkeypatch):
    _interrupt_at(monkeypatch, epoch=3, batch=1)
    res = train(tiny("basic", epochs=4), tmp_path, progress=False, checkpoint_minutes=1e6)
    assert res["status"] == "interrupted"
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 2


@pytest.mark.integration
def test_sigterm_checkpoints_and_exits_with_resume_message(tmp_path):
    args = ["--experiment", "basic", "--dataset", "synthetic", "--epochs", "50", "--width", "4",
            "--batch-size", "32", "--train-size", "256", "--test-size", "64"]
    proc = subprocess.Popen(_cli(tmp_path, args), env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 600  # ends a hung test only: the signal waits for epoch 2's row
    while len(read_metrics(tmp_path / "metrics.csv")) < 2:
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[0][-3000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "Interrupted after epoch" in out and "again to resume" in out
    saved = torch.load(tmp_path / "last.pt", weights_only=True)["epoch"]
    assert 2 <= saved < 50 and len(read_metrics(tmp_path / "metrics.csv")) == saved


@pytest.mark.integration
@pytest.mark.parametrize("when", ["setup", "epoch"])
def test_sigterm_at_any_point_lets_go_of_the_lease_and_mirrors_what_there_is(tmp_path, when):
    """SIGTERM (Colab, kill, torchrun) while the run is set up (its config.json being
    written, before any epoch) or at epoch 2's checkpoint: the process ends by itself (130),
    the lease on Drive is let go, so the next start is never refused, and Drive holds
    every epoch that finished."""
    drive, local = tmp_path / "drive", tmp_path / "local"
    run = drive / "runs" / "t"
    env = {**ENV, "COLABKIT_DRIVE": str(drive), "COLABKIT_LOCAL": str(local)}
    args = ["--experiment", "basic", "--dataset", "synthetic", "--epochs", "4", "--width", "4",
            "--batch-size", "32", "--train-size", "64", "--test-size", "32", "--mirror-minutes", "1e6"]
    trap = ("term", "1", "config.json") if when == "setup" else ("term", "2", "last.pt&.tmp-")
    proc = subprocess.run(_cli(run, args, trap), env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 130, out[-3000:]
    lease = json.loads((run / "lease.json").read_text()) if (run / "lease.json").exists() else None
    assert lease is None or lease.get("released"), lease
    if when == "setup":
        assert "Interrupted: every finished epoch's checkpoint is in the run folder" in out
        assert not (run / "last.pt").exists()
    else:  # epoch 2's checkpoint was being installed: epoch 1 is the last that finished
        assert "Interrupted after epoch" in out
        assert torch.load(run / "last.pt", weights_only=True)["epoch"] >= 1
        assert [r["epoch"] for r in read_metrics(run / "metrics.csv")] == \
            [r["epoch"] for r in read_metrics(local / "t" / "metrics.csv")]


@pytest.mark.parametrize("damage", ["truncate", "flip", "missing"])
def test_damaged_newest_checkpoint_resumes_from_previous(tiny, tmp_path, reference, damage):
    exp = tiny("basic", epochs=3)
    train(tiny("basic", epochs=2), tmp_path, progress=False)  # last = epoch 2, prev = epoch 1
    last = tmp_path / "last.pt"
    raw = last.read_bytes()
    if damage == "truncate":
        last.write_bytes(raw[: len(raw) // 3])
    elif damage == "flip":
        b = bytearray(raw); b[len(b) // 2] ^= 0x10; last.write_bytes(bytes(b))
    else:
        last.unlink()
    if damage == "missing":
        res = train(exp, tmp_path, progress=False)
    else:
        with pytest.warns(UserWarning, match=r"skipping checkpoint: .*last\.pt"):
            res = train(exp, tmp_path, progress=False)
    ref_dir, _ = reference(exp)
    assert res["epochs_done"] == 3 and _same_weights(_weights(tmp_path), _weights(ref_dir))
    assert _det(read_metrics(tmp_path / "metrics.csv")) == _det(read_metrics(ref_dir / "metrics.csv"))


def test_changed_config_is_refused_naming_the_keys(tiny, tmp_path):
    train(tiny("basic", epochs=1), tmp_path, progress=False)
    with pytest.raises(ConfigMismatch, match=r"lr: saved 0\.1, now 0\.05; seed: saved 0, now 1"):
        train(tiny("basic", epochs=1, lr=0.05, seed=1), tmp_path, progress=False)
    res = train(tiny("basic", epochs=2, lr=0.05), tmp_path, progress=False, allow_config_change=True)
    assert res["epochs_done"] == 2


def test_a_trial_is_never_silently_extended_onto_another_schedule(tiny, tmp_path, capsys):
    # the report's steps at a third and two thirds: 3 epochs step after 1 and 2
    train(tiny("basic", epochs=3, milestones=None), tmp_path, progress=False)
    assert [r["lr"] for r in read_metrics(tmp_path / "metrics.csv")] == pytest.approx([0.1, 0.01, 0.001])
    with pytest.raises(ConfigMismatch, match=r"planned for 3 epochs and has trained 3; 9 epochs "
                       r"would move its learning-rate schedule under them \(epoch 2 trained at "
                       r"lr 0\.01, the 9-epoch plan gives 0\.1\)"):
        train(tiny("basic", epochs=9, milestones=None), tmp_path, progress=False)
    assert len(read_metrics(tmp_path / "metrics.csv")) == 3
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 3
    # steps still ahead of every trained epoch: the longer plan is this run's plan, silently
    long = tmp_path / "long"
    train(tiny("basic", epochs=300, milestones=None), long, progress=False, max_minutes=1e-4)
    res = train(tiny("basic", epochs=330, milestones=None), long, progress=False, max_minutes=1e-4)
    assert res["status"] == "budget" and res["epochs"] == 330  # taken, not refused
    assert json.loads((long / "config.json").read_text())["epochs"] == 330
    assert "learning-rate schedule" not in capsys.readouterr().out


def test_finished_run_returns_at_once_without_data_or_training(tiny, tmp_path, monkeypatch):
    exp = tiny("basic", epochs=2)
    first = train(exp, tmp_path, progress=False)
    stamp = (tmp_path / "last.pt").stat().st_mtime_ns

    def no_data(*a, **k):
        raise AssertionError("a finished run must not load data")
    monkeypatch.setattr(sys.modules["colabkit.training.loop"], "load_dataset", no_data)
    again = train(exp, tmp_path, progress=False)
    assert again["status"] == "finished" and again["best_acc"] == first["best_acc"]
    assert again["history"] == first["history"]
    assert (tmp_path / "last.pt").stat().st_mtime_ns == stamp


def test_more_epochs_extend_a_finished_run(tiny, tmp_path, reference):
    train(tiny("basic", epochs=2), tmp_path, progress=False)
    res = train(tiny("basic", epochs=3), tmp_path, progress=False)
    ref_dir, _ = reference(tiny("basic", epochs=3))
    assert res["epochs_done"] == 3 and _same_weights(_weights(tmp_path), _weights(ref_dir))


def test_budget_stops_after_the_last_epoch_that_fits(tiny, tmp_path, capsys):
    res = train(tiny("basic", epochs=50), tmp_path, progress=False, max_minutes=1e-4)
    assert res["status"] == "budget" and res["epochs_done"] == 1
    assert "Time budget" in capsys.readouterr().out
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 1


@pytest.mark.parametrize("code,words", [(errno.ENOSPC, "disk is full"), (errno.EIO, "I/O error")])
def test_disk_errors_stop_training_clearly_and_keep_the_previous_checkpoint(tiny, tmp_path, monkeypatch, code, words):
    exp = tiny("basic", epochs=3)
    train(tiny("basic", epochs=1), tmp_path, progress=False)
    good = (tmp_path / "last.pt").read_bytes()

    class FailingFile(io.BytesIO):
        def write(self, data):
            raise OSError(code, os.strerror(code))

    # the checkpoint writes of epoch 2 fail (config.json and metrics.csv still write)
    def failing_open(file, *args, **kwargs):
        return FailingFile() if ".pt.tmp" in str(file) else open(file, *args, **kwargs)
    monkeypatch.setattr(files, "open", failing_open, raising=False)
    with pytest.raises(CheckpointError, match=rf"{words}.*(last|best)\.pt is intact"):
        train(exp, tmp_path, progress=False)
    assert (tmp_path / "last.pt").read_bytes() == good
    assert [r["epoch"] for r in read_metrics(tmp_path / "metrics.csv")] == [1]
    # every write fails, from the start: a clear error, nothing lost
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(code, os.strerror(code))))
    with pytest.raises(RunFolderError, match=rf"{words}.*previous version is intact"), \
            pytest.warns(UserWarning, match=rf"could not renew the lease .*{words}"):
        train(exp, tmp_path, progress=False)
    monkeypatch.undo()
    assert (tmp_path / "last.pt").read_bytes() == good
    assert [r["epoch"] for r in read_metrics(tmp_path / "metrics.csv")] == [1]
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_unwritable_run_folder_or_unknown_experiment_fail_before_training(tmp_path, monkeypatch):
    def no_data(*a, **k):
        raise AssertionError("must fail before loading data")
    monkeypatch.setattr(sys.modules["colabkit.training.loop"], "load_dataset", no_data)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(PermissionError, match="cannot write to the run folder"):
        train("basic", blocker / "run", progress=False)
    with pytest.raises(ValueError, match="unknown experiment 'nope'"):
        train("nope", tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_time_cadence_checkpoints_at_the_end_only_when_no_interval_passed(tiny, tmp_path):
    res = train(tiny("basic", epochs=3), tmp_path, progress=False, checkpoint_minutes=1e6)
    assert res["status"] == "finished"
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 3
    assert not (tmp_path / "last.prev.pt").exists()  # one write: the final one
    assert [r["epoch"] for r in read_metrics(tmp_path / "metrics.csv")] == [1, 2, 3]
    assert (tmp_path / "best.pt").exists()


def test_fp16_with_grad_scaler_resumes_exactly(tiny, tmp_path, monkeypatch):
    """The T4 path (fp16 autocast + GradScaler, whose state is checkpointed), run on the
    CPU. A huge initial scale forces overflows and backoffs, so the restored scale differs
    from a fresh scaler's: a resume that skipped restoring it would diverge."""
    import functools

    real = torch.amp.GradScaler
    monkeypatch.setattr(torch.amp, "GradScaler", functools.partial(real, init_scale=2.0 ** 26))
    exp = tiny("da_cbam", epochs=3)
    ref = train(exp, tmp_path / "ref", progress=False, precision="fp16")
    state = torch.load(tmp_path / "ref" / "last.pt", weights_only=True)
    assert state["precision"] == "fp16" and 0 < state["scaler"]["scale"] < 2.0 ** 24  # backed off
    _interrupt_at(monkeypatch, epoch=2, batch=1)
    assert train(exp, tmp_path / "run", progress=False, precision="fp16")["status"] == "interrupted"
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["scaler"]["scale"] < 2.0 ** 26
    monkeypatch.setattr(loader_mod.DeviceLoader, "epoch", _REAL_EPOCH)
    res = train(exp, tmp_path / "run", progress=False, precision="fp16")
    assert _same_weights(_weights(tmp_path / "run"), _weights(tmp_path / "ref"))
    assert _det(res["history"]) == _det(ref["history"])


def test_resume_does_not_depend_on_the_global_random_state(tiny, tmp_path, monkeypatch, reference):
    """Checkpoints hold no RNG state: every draw comes from generators seeded by (seed,
    epoch), so a resume in a process whose global RNGs are elsewhere ends the same."""
    exp = tiny("da", epochs=3)
    _interrupt_at(monkeypatch, epoch=2, batch=1)
    train(exp, tmp_path, progress=False)
    monkeypatch.undo()
    assert "rng" not in torch.load(tmp_path / "last.pt", weights_only=True)
    torch.manual_seed(987654)
    random.seed(1)
    torch.rand(1000)
    res = train(exp, tmp_path, progress=False)
    ref_dir, ref = reference(exp)
    assert _same_weights(_weights(tmp_path), _weights(ref_dir))
    assert _det(res["history"]) == _det(ref["history"])


def test_metrics_rows_lost_after_the_last_checkpoint_come_back_on_the_next_start(tiny, tmp_path):
    exp = tiny("basic", epochs=3)
    train(exp, tmp_path, progress=False)
    full = (tmp_path / "metrics.csv").read_text()
    # a kill after the last checkpoint committed and before metrics.csv was written
    (tmp_path / "metrics.csv").write_text("".join(full.splitlines(True)[:2]))
    assert len(read_metrics(tmp_path / "metrics.csv")) == 1
    assert train(exp, tmp_path, progress=False)["status"] == "finished"
    assert (tmp_path / "metrics.csv").read_text() == full


def test_a_folder_without_a_finished_epoch_takes_a_new_configuration(tiny, tmp_path, capsys):
    # a first attempt failed before its first epoch (batch larger than the data)
    with pytest.raises(ValueError, match="fewer than one batch of 512: lower the batch size"):
        train(tiny("basic", epochs=1, batch_size=512), tmp_path, progress=False)
    assert not (tmp_path / "config.json").exists()  # nothing recorded before it could start
    (tmp_path / "config.json").write_text(json.dumps(tiny("basic", epochs=1, batch_size=64).to_dict()))  # an older attempt
    res = train(tiny("basic", epochs=1, batch_size=16), tmp_path, progress=False)
    assert res["epochs_done"] == 1
    assert "has no finished epoch yet: starting it with the new configuration (batch_size" in \
        capsys.readouterr().out
    assert json.loads((tmp_path / "config.json").read_text())["batch_size"] == 16


@pytest.mark.integration
def test_background_writer_inside_train_saves_and_survives_an_interrupt(tiny, tmp_path, monkeypatch, reference):
    exp = tiny("basic", epochs=4)
    _interrupt_at(monkeypatch, epoch=3, batch=1)
    res = train(exp, tmp_path, progress=False, background_save=True)
    assert res["status"] == "interrupted" and res["epochs_done"] == 2
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 2
    assert [r["epoch"] for r in read_metrics(tmp_path / "metrics.csv")] == [1, 2]
    monkeypatch.undo()
    train(exp, tmp_path, progress=False, background_save=True)
    ref_dir, _ = reference(exp)
    assert _same_weights(_weights(tmp_path), _weights(ref_dir))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


class _Crashed(Exception):
    """A child process died of SIGSEGV, SIGABRT ("double free or corruption") or SIGBUS: a
    crash inside torch's own compiled code."""


_CRASHES = (-signal.SIGSEGV, -signal.SIGABRT, -signal.SIGBUS)


def _bounded(cmd, deadline, returncode=0):
    """Run ``cmd`` in its own process group, killed whole at ``deadline`` (time.time())."""
    proc = subprocess.Popen(cmd, env={**ENV, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=max(1.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"{' '.join(cmd[3:6])}... did not finish in time and was killed")
    if proc.returncode in _CRASHES and proc.returncode != returncode:
        said = [l for l in err.splitlines() if "corruption" in l or "Fatal Python error" in l]
        raise _Crashed(f"{signal.Signals(-proc.returncode).name}{': ' + said[0] if said else ''}")
    assert proc.returncode == returncode, err[-3000:]
    return out


@pytest.mark.integration
def test_compiled_model_trains_and_resumes_with_plain_state_dict_keys(tiny, tmp_path, reference):
    # torch.compile runs in child processes with a hard deadline, never in pytest's own:
    # under load, a compiled CPU step once spun inside oneDNN's convolution backward for over
    # 20 minutes, in C code that pytest-timeout cannot interrupt. One OpenMP thread per child
    # avoids the oversubscribed spin-wait; the deadline guarantees the suite ends regardless.
    # the fast recipe: per-step learning rate, translate and cutout, flip TTA in evaluation
    exp = tiny("basic", recipe="fast", epochs=2, train_size=64, milestones=None)
    cli = [sys.executable, "-m", "colabkit", "train", "--experiment", "basic", "--recipe", "fast",
           "--dataset", "synthetic", "--width", "4", "--batch-size", "32", "--train-size", "64",
           "--test-size", "64", "--device", "cpu", "--quiet", "--compile"]
    deadline = time.time() + 480
    kill = [sys.executable, str(HERE / "crash_child.py"), "step", "3", "", *cli[3:]]
    try:
        _bounded([*cli, "--epochs", "2", "--run-dir", str(tmp_path / "straight")], deadline)
        # killed at the first step of epoch 2 (64 images, batch 32: 2 steps an epoch), resumed
        _bounded([*kill, "--epochs", "2", "--run-dir", str(tmp_path / "run")], deadline, -signal.SIGKILL)
        res = json.loads(_bounded([*cli, "--epochs", "2", "--json", "--run-dir", str(tmp_path / "run")],
                                  deadline))
    except _Crashed as e:
        # seen with torch 2.14.1 on an AVX2-only AMD EPYC (2026-12-01): Inductor's generated
        # CPU backward dies of SIGSEGV, or of "double free or corruption", inside torch,
        # where colabkit cannot fall back; earlier machines compiled it. Said, not hidden
        pytest.xfail(f"torch {torch.__version__}'s compiled CPU code crashed on this CPU "
                     f"({e}); the eager path is tested everywhere")
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert res["epochs_done"] == 2 and not any(k.startswith("_orig_mod") for k in state["model"])
    assert state["config"] == exp.to_dict()  # the experiment the eager reference ran
    env = json.loads((tmp_path / "run" / "environment.json").read_text())
    assert env["compile"] is True and env["resumed_from_epoch"] == 1
    for k, v in _weights(tmp_path / "straight").items():  # resumed, compiled again = straight
        torch.testing.assert_close(state["model"][k], v, rtol=1e-5, atol=1e-6)
    _, eager = reference(exp)  # the first epoch, from the same weights, agrees with eager mode
    first = read_metrics(tmp_path / "straight" / "metrics.csv")[0]
    assert first["train_loss"] == pytest.approx(eager["history"][0]["train_loss"], rel=1e-3)


def test_a_new_run_folder_says_which_runs_of_its_experiment_stand_beside_it(tiny, tmp_path, capsys):
    train(tiny("basic", recipe="fast", epochs=2, milestones=None), tmp_path / "m1-fast", progress=False)
    train(tiny("da", epochs=1), tmp_path / "m2", progress=False)  # another experiment: not named
    capsys.readouterr()
    train(tiny("basic", epochs=1), tmp_path / "m1", progress=False)
    out = capsys.readouterr().out
    assert ("m1 has no checkpoint yet, but beside it m1-fast holds basic by the fast recipe, "
            "2/2 epochs. This starts a new run") in out
    assert "m2" not in out.split("This starts")[0] and "RECIPE and EPOCHS" in out
    train(tiny("basic", epochs=2), tmp_path / "m1", progress=False)  # it has one now: quiet
    assert "beside it" not in capsys.readouterr().out


def test_ctrl_c_before_the_first_epoch_says_nothing_was_saved(tiny, tmp_path, monkeypatch, capsys):
    def stop(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(sys.modules["colabkit.training.loop"], "train_and_evaluate", stop)
    res = train(tiny("basic", epochs=2), tmp_path, progress=False)
    out = capsys.readouterr().out
    assert res["status"] == "interrupted" and res["epochs_done"] == 0
    assert "before the first epoch finished: nothing was saved yet" in out
    assert "checkpoint saved" not in out and not (tmp_path / "last.pt").exists()


def test_a_run_resumed_in_another_precision_says_so(tmp_path, tiny, capsys):
    """fp16 on a T4 becomes bf16 on an L4 or A100 when a run moves: printed, as a change of
    world size is."""
    train(tiny(epochs=1), tmp_path, precision="bf16", progress=False)
    capsys.readouterr()
    train(tiny(epochs=2), tmp_path, precision="fp32", progress=False)
    out = capsys.readouterr().out
    assert "Note: this run was trained in bf16 and continues in fp32" in out
    assert "pass precision='bf16' (--precision bf16)" in out
    assert torch.load(tmp_path / "last.pt", weights_only=True)["precision"] == "fp32"
    train(tiny(epochs=3), tmp_path, precision="fp32", progress=False)
    assert "trained in" not in capsys.readouterr().out  # the same precision: no note


@pytest.mark.parametrize("precision,dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16),
                                             ("fp16", torch.float16)])
def test_training_and_evaluation_compute_the_logits_in_the_precision_asked(tmp_path, tiny, monkeypatch,
                                                                          precision, dtype):
    from colabkit.experiments import Experiment

    seen = set()
    real = Experiment.network

    def build(self, num_classes):
        model = real(self, num_classes)
        model.register_forward_hook(lambda m, i, out: seen.add((m.training, out.dtype)))
        return model
    monkeypatch.setattr(Experiment, "network", build)
    train(tiny(epochs=1), tmp_path, precision=precision, progress=False)
    assert seen == {(True, dtype), (False, dtype)}  # autocast in the training steps and the evaluation


def test_the_grad_scalers_state_is_restored_on_resume(tmp_path, tiny):
    """fp16's loss scale and its growth count carry on from the checkpoint: a scaler started
    afresh would be back at 2**16 with its count from 0."""
    from colabkit.rundir.checkpoint import read_checkpoint, save_checkpoint

    train(tiny(epochs=1), tmp_path, precision="fp16", progress=False)
    state = read_checkpoint(tmp_path / "last.pt")
    steps = state["history"][0]["epoch"] * (128 // 32)  # 4 steps an epoch
    assert state["scaler"]["scale"] == 2.0 ** 16 and state["scaler"]["_growth_tracker"] == steps
    state["scaler"].update(scale=1024.0, _growth_tracker=100)  # as a long run's would be
    save_checkpoint(state, tmp_path / "last.pt")
    train(tiny(epochs=2), tmp_path, precision="fp16", progress=False)
    after = read_checkpoint(tmp_path / "last.pt")["scaler"]
    assert (after["scale"], after["_growth_tracker"]) == (1024.0, 100 + steps)
