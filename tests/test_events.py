"""colabkit.rundir.events, colabkit.colab.board: TensorBoard event files from a run's history,
read back with TensorBoard's own reader (its EventAccumulator), never with the writer's calls."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from colabkit.colab import board
from colabkit.rundir import events
from colabkit.rundir.events import BEST, FINAL, INSTALL, TAGS, write_tensorboard
from colabkit.rundir.runs import RunDir, read_json, read_metrics
from colabkit.training.loop import train

pytest.importorskip("tensorboard")  # the test extra installs it; Colab has it
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2  # noqa: E402

HERE = Path(__file__).parent
ENV = {**os.environ, "PYTHONPATH": str(HERE.parent), "PYTHONUNBUFFERED": "1"}


def _read(run_dir):
    """(scalars {tag: [(step, value, wall_time)]}, hparams {tag: HParamsPluginData}, files)
    as TensorBoard reads the folder."""
    ea = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    ea.Reload()
    scalars = {t: [(e.step, e.value, e.wall_time) for e in ea.Scalars(t)] for t in ea.Tags()["scalars"]}
    try:
        content = ea.PluginTagToContent("hparams")
    except KeyError:
        content = {}
    hp = {t: plugin_data_pb2.HParamsPluginData.FromString(c) for t, c in content.items()}
    files = sorted(p.name for p in Path(run_dir).iterdir() if "tfevents" in p.name)
    return scalars, hp, files


def _expected(rows):
    """What TensorBoard should show, from metrics.csv alone: each column's value at each
    epoch, as a float32 (TensorBoard's simple_value)."""
    out = {}
    for column, tag in TAGS.items():
        pts = [(r["epoch"], np.float32(r[column])) for r in rows if r.get(column) is not None]
        if pts:
            out[tag] = pts
    return out


@pytest.fixture(scope="module")
def tta_run(tmp_path_factory):
    """A finished run with a validation split and flip TTA: every tag there is."""
    from colabkit.experiments import get_experiment

    run = tmp_path_factory.mktemp("tb") / "r"
    exp = get_experiment("basic", "fast", dataset="synthetic", epochs=4, batch_size=32, width=4,
                         train_size=128, test_size=64, val_size=32)
    grown = []
    train(exp, run, progress=False, on_epoch=lambda row, h: grown.append(
        (RunDir(run).events.read_bytes(), os.stat(RunDir(run).events).st_ino)))
    return run, exp, grown


def test_the_events_read_back_are_metrics_csv(tta_run):
    run, exp, _ = tta_run
    rows = read_metrics(run / "metrics.csv")
    scalars, _, files = _read(run)
    assert files == ["events.out.tfevents.colabkit"]
    want = _expected(rows)
    assert set(want) >= {"accuracy/val_flip_tta", "accuracy/test_flip_tta", "loss/val", "lr",
                         "speed/images_per_s", "speed/epoch_seconds"}
    for tag, pts in want.items():
        assert [(s, np.float32(v)) for s, v, _ in scalars[tag]] == pts, tag
    # the x axis is the epoch; the wall time is the epoch's own, from metrics.csv
    from datetime import datetime
    assert [w for _, _, w in scalars["loss/train"]] == \
        [pytest.approx(datetime.fromisoformat(r["time"]).timestamp()) for r in rows]


def test_hparams_hold_the_config_and_best_and_final_accuracy(tta_run):
    run, exp, _ = tta_run
    rows = read_metrics(run / "metrics.csv")
    scalars, hp, _ = _read(run)
    config = read_json(run / "config.json")
    start = hp["_hparams_/session_start_info"].session_start_info.hparams
    want = {("augment", k): v for k, v in config.pop("augment").items()}
    want.update({(k,): v for k, v in config.items()})
    assert set(start) == {".".join(k) for k in want} and "augment.hflip" in start
    for k, v in want.items():
        value = start[".".join(k)]
        if isinstance(v, bool):
            assert value.bool_value is v, k
        elif isinstance(v, (int, float)):
            assert value.number_value == v, k
        elif isinstance(v, (list, tuple)):
            assert value.string_value == (",".join(map(str, v)) or "none"), k
        else:
            assert value.string_value == ("none" if v is None else str(v)), k
    assert "_hparams_/experiment" not in hp  # TensorBoard builds it from every run's session
    assert hp["_hparams_/session_end_info"].session_end_info.status == api_pb2.STATUS_SUCCESS
    # selected as Table 1 selects: on validation, with flip TTA; reported on test
    best = max(rows, key=lambda r: (r["val_acc_tta"], -r["epoch"]))
    assert scalars[BEST][-1][1] == np.float32(best["test_acc_tta"])
    assert scalars[FINAL][-1][1] == np.float32(rows[-1]["test_acc_tta"])


def test_the_file_after_each_epoch_begins_with_the_file_before(tta_run):
    """TensorBoard reads an event file on from where it stopped: each epoch's file extends
    the last one, so a live view never sees a record change under it."""
    _, _, grown = tta_run
    files = [data for data, _ in grown]
    assert len(files) == 4 and all(len(a) < len(b) for a, b in zip(files, files[1:]))
    assert all(b.startswith(a) for a, b in zip(files, files[1:]))
    assert len({inode for _, inode in grown}) == 1  # appended in place, never replaced


@pytest.mark.integration
def test_a_killed_and_resumed_run_has_each_epoch_once(tmp_path):
    """SIGKILL in epoch 3, then the same command again: one file, each epoch once, with
    the values of metrics.csv."""
    run = tmp_path / "run"
    args = [sys.executable, str(HERE / "crash_child.py"), "step", "13", "", "train", "--run-dir",
            str(run), "--quiet", "--device", "cpu", "--experiment", "basic", "--dataset", "synthetic",
            "--epochs", "4", "--width", "4", "--batch-size", "32", "--train-size", "192",
            "--test-size", "64"]
    killed = subprocess.run(args, env=ENV, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -9, killed.stdout + killed.stderr
    assert [s for s, _, _ in _read(run)[0]["loss/train"]] == [1, 2]
    args[2:5] = ["none", "0", ""]
    done = subprocess.run(args, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    scalars, hp, files = _read(run)
    assert files == ["events.out.tfevents.colabkit"]
    for tag, pts in _expected(read_metrics(run / "metrics.csv")).items():
        assert [(s, np.float32(v)) for s, v, _ in scalars[tag]] == pts, tag
    assert [s for s, _, _ in scalars["loss/train"]] == [1, 2, 3, 4]


def test_a_resume_from_an_older_checkpoint_rewrites_the_file_with_each_epoch_once(tiny, tmp_path):
    """The newest checkpoint is damaged: training resumes from the one before (epoch 2),
    while the event file holds epoch 3. The file is rewritten from the history: epoch 3
    once, with the values of the epoch trained again."""
    train(tiny("basic", epochs=3), tmp_path, progress=False)
    last = tmp_path / "last.pt"
    raw = bytearray(last.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    last.write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match="skipping checkpoint"):
        train(tiny("basic", epochs=4), tmp_path, progress=False, allow_config_change=True)
    scalars, _, _ = _read(tmp_path)
    for tag, pts in _expected(read_metrics(tmp_path / "metrics.csv")).items():
        assert [(s, np.float32(v)) for s, v, _ in scalars[tag]] == pts, tag
    assert [s for s, _, _ in scalars["loss/train"]] == [1, 2, 3, 4]


def test_old_runs_get_event_files_from_metrics_csv_alone(tta_run, tmp_path, capsys):
    """Run folders with only metrics.csv (and config.json), at any depth: the command line
    and the Python call write their event files, equal to those training writes."""
    run, _, _ = tta_run
    old = tmp_path / "logs" / "ablations" / "r"
    old.mkdir(parents=True)
    for name in ("metrics.csv", "config.json"):
        (old / name).write_bytes((run / name).read_bytes())
    bare = tmp_path / "logs" / "bare"
    bare.mkdir()
    (bare / "metrics.csv").write_bytes((run / "metrics.csv").read_bytes())  # no config.json
    from colabkit.__main__ import main

    assert main(["tensorboard", str(tmp_path / "logs")]) == 0
    assert "wrote 2 event file(s)" in capsys.readouterr().out
    assert (old / RunDir(old).events.name).read_bytes() == RunDir(run).events.read_bytes()
    scalars, hp, _ = _read(bare)
    assert hp == {} and [s for s, _, _ in scalars["loss/train"]] == [1, 2, 3, 4]
    assert write_tensorboard(tmp_path / "logs") == [old / RunDir(old).events.name,
                                                    bare / RunDir(bare).events.name]
    assert main(["tensorboard", str(tmp_path / "nowhere")]) == 2


def test_the_event_file_reaches_drive_through_the_mirror(tiny, tmp_path, monkeypatch):
    drive, local = tmp_path / "drive", tmp_path / "local"
    drive.mkdir()
    monkeypatch.setenv("COLABKIT_DRIVE", str(drive))
    monkeypatch.setenv("COLABKIT_LOCAL", str(local))
    train(tiny("basic", epochs=2), drive / "r", progress=False)
    on_drive, working = RunDir(drive / "r").events, RunDir(local / "r").events
    assert on_drive.read_bytes() == working.read_bytes()
    assert [s for s, _, _ in _read(drive / "r")[0]["loss/train"]] == [1, 2]


def test_without_tensorboard_training_goes_on_and_one_line_says_how_to_install(
        tiny, tmp_path, monkeypatch, capsys):
    for name in [m for m in sys.modules if m.split(".")[0] == "tensorboard"] + ["tensorboard"]:
        monkeypatch.setitem(sys.modules, name, None)  # importing any of it raises ImportError
    events.available.cache_clear()
    try:
        res = train(tiny("basic", epochs=2), tmp_path / "r", progress=False)
        out = capsys.readouterr().out
        assert res["status"] == "finished" and out.count(INSTALL) == 1
        assert not RunDir(tmp_path / "r").events.exists()
        from colabkit.__main__ import main

        assert main(["tensorboard", str(tmp_path)]) == 2
        assert "pip install tensorboard" in capsys.readouterr().err
        assert board.show_tensorboard(tmp_path) == tmp_path and INSTALL in capsys.readouterr().out
    finally:
        monkeypatch.undo()
        events.available.cache_clear()


def test_tensorboard_is_pointed_at_the_working_copies_while_training_and_at_drive_after(
        tmp_path, monkeypatch, capsys):
    drive, local = tmp_path / "drive", tmp_path / "local"
    monkeypatch.setenv("COLABKIT_DRIVE", str(drive))
    monkeypatch.setenv("COLABKIT_LOCAL", str(local))
    assert board.tensorboard_logdir(drive / "runs") == local
    assert board.tensorboard_logdir(drive / "runs", training=False) == drive / "runs"
    assert board.tensorboard_logdir(tmp_path / "runs") == tmp_path / "runs"  # its own working copy
    started = []
    import tensorboard.notebook

    monkeypatch.setattr(tensorboard.notebook, "start", started.append)
    board.show_tensorboard(drive / "runs")  # not in a notebook: the line only
    assert started == [] and \
        f"%tensorboard --logdir {local} --detect_file_replacement=true" in capsys.readouterr().out
    import IPython

    monkeypatch.setattr(IPython, "get_ipython", lambda: type("Kernel", (), {"kernel": object()})())
    board.show_tensorboard(drive / "runs", training=False)
    assert started == [f"--logdir {drive / 'runs'} --detect_file_replacement=true"]
    board.show_tensorboard(drive / "runs", start=False)
    assert len(started) == 1


@pytest.mark.parametrize("val, tta", [(True, True), (True, False), (False, True), (False, False)])
def test_best_accuracy_is_the_test_accuracy_at_the_epoch_table_1_selects(tmp_path, val, tta):
    """Epoch 2 has the best validation accuracy, epoch 3 the best test accuracy, and with
    TTA the plain and flip-TTA columns peak at other epochs still: the best is read on the
    column Table 1 selects on (validation when the run has it, flip TTA when it uses it)."""
    cols = {"test_acc": [10, 30, 50, 20], "test_acc_tta": [12, 60, 40, 35],
            "val_acc": [10, 70, 20, 30], "val_acc_tta": [11, 20, 30, 80]}
    rows = []
    for i in range(4):
        row = {"epoch": i + 1, "lr": 0.1, "train_loss": 1.0, "train_acc": 50.0, "test_loss": 1.0,
               "test_acc": float(cols["test_acc"][i]), "seconds": 1.0, "images_per_s": 100.0,
               "time": f"2026-12-05T00:0{i}:00+00:00"}
        if val:
            row.update(val_loss=1.0, val_acc=float(cols["val_acc"][i]))
        if tta:
            row.update(test_acc_tta=float(cols["test_acc_tta"][i]),
                       val_acc_tta=float(cols["val_acc_tta"][i]) if val else None)
        rows.append(row)
    events.write_events(RunDir(tmp_path), rows, {"epochs": 4, "tta": tta})
    select = ("val" if val else "test") + ("_acc_tta" if tta else "_acc")
    report = "test_acc_tta" if tta else "test_acc"
    at = max(range(4), key=lambda i: (cols[select][i], -i))
    scalars, _, _ = _read(tmp_path)
    assert scalars[BEST][-1][1] == cols[report][at] and scalars[FINAL][-1][1] == cols[report][3]


def test_no_event_file_before_the_first_epoch(tmp_path):
    """A run set up but not yet through an epoch has nothing to show: no file (it would be
    replaced, not extended, at the first epoch)."""
    assert events.write_events(RunDir(tmp_path), [], {"epochs": 3}) is False
    assert not RunDir(tmp_path).events.exists()
