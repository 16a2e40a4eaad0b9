"""Run folders written by an earlier colabkit resume under this one, and replay exactly.

The fixture is a real run folder trained by colabkit 0.2.0 as it was before the package was
split into floors (commit 84cb35c): model 4 at width 4 on synthetic data, 2 epochs with a
validation split, made by
``python -m colabkit train --experiment da_cbam_aspp --dataset synthetic --epochs 2
--width 4 --batch-size 32 --train-size 128 --test-size 64 --val-size 32 --milestones 1
--device cpu``.

Its numbers were computed on another CPU. Floating-point results are bit-exact on one
machine, not across machines (oneDNN and ATen choose kernels by CPU), so nothing here
compares a number computed now with one the fixture holds: what holds on any machine is
that the old folder loads and resumes, that its saved history is kept as it was, and that
resuming it ends exactly as continuing it without a stop, both computed here."""
import csv
import shutil
from pathlib import Path

import pytest
import torch

from colabkit.experiments import get_experiment
from colabkit.rundir.runs import DETERMINISTIC_FIELDS, read_metrics
from colabkit.training.loop import train

FIXTURE = Path(__file__).parent / "fixtures" / "colabkit-0.2.0-da_cbam_aspp"


def _exp(epochs):
    return get_experiment("da_cbam_aspp", dataset="synthetic", epochs=epochs, width=4,
                          batch_size=32, train_size=128, test_size=64, val_size=32, milestones=(1,))


def _det(rows):
    return [{k: r[k] for k in DETERMINISTIC_FIELDS} for r in rows]


def _old(tmp_path, name):
    run = tmp_path / name
    shutil.copytree(FIXTURE, run)
    return run


def test_a_run_folder_of_colabkit_0_2_0_resumes_and_keeps_its_history(tmp_path):
    run = _old(tmp_path, "old")
    saved = read_metrics(FIXTURE / "metrics.csv")
    assert [r["epoch"] for r in saved] == [1, 2]
    with pytest.warns(UserWarning, match=r"trained with colabkit 0\.2\.0 \(84cb35cf27\) and continues"):
        res = train(_exp(3), run, progress=False)
    assert res["status"] == "finished" and res["epochs_done"] == 3
    rows = read_metrics(run / "metrics.csv")
    assert _det(rows[:2]) == _det(saved)  # the old epochs kept as they were, to the bit
    with open(run / "metrics.csv", newline="") as f, open(FIXTURE / "metrics.csv", newline="") as g:
        cut = lambda rows: [{k: r[k] for k in DETERMINISTIC_FIELDS} for r in csv.DictReader(rows)]
        assert cut(f)[:2] == cut(g)  # the very text of those columns, read by name
    state = torch.load(run / "last.pt", weights_only=True)
    assert state["epoch"] == 3 and _det(state["history"][:2]) == _det(saved)
    assert rows[2]["epoch"] == 3 and rows[2]["lr"] == pytest.approx(0.01)  # after milestone 1


def test_an_old_run_resumed_twice_ends_as_one_continued_without_a_stop(tmp_path):
    # both computed on this machine from the same old checkpoint: one call to epoch 4, and
    # one to epoch 3 then another to epoch 4
    straight, stopped = _old(tmp_path, "straight"), _old(tmp_path, "stopped")
    with pytest.warns(UserWarning):
        train(_exp(4), straight, progress=False)
    with pytest.warns(UserWarning):
        train(_exp(3), stopped, progress=False)
    train(_exp(4), stopped, progress=False)  # now saved by this colabkit: no warning
    assert _det(read_metrics(stopped / "metrics.csv")) == _det(read_metrics(straight / "metrics.csv"))
    a = torch.load(stopped / "last.pt", weights_only=True)
    b = torch.load(straight / "last.pt", weights_only=True)
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    momentum = lambda s: [v["momentum_buffer"] for v in s["optimizer"]["state"].values()]
    assert all(torch.equal(x, y) for x, y in zip(momentum(a), momentum(b)))
