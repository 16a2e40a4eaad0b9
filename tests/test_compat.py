"""Run folders written by an earlier colabkit resume under this one, and replay exactly.

The fixture is a real run folder trained by colabkit 0.2.0 as it was before the package was
split into floors (commit 84cb35c): model 4 at width 4 on synthetic data, 2 epochs with a
validation split, made by
``python -m colabkit train --experiment da_cbam_aspp --dataset synthetic --epochs 2
--width 4 --batch-size 32 --train-size 128 --test-size 64 --val-size 32 --milestones 1
--device cpu``."""
import shutil
from pathlib import Path

import pytest
import torch

from colabkit.experiments import get_experiment
from colabkit.runs import DETERMINISTIC_FIELDS, read_metrics
from colabkit.train import train

FIXTURE = Path(__file__).parent / "fixtures" / "colabkit-0.2.0-da_cbam_aspp"


def _exp(epochs):
    return get_experiment("da_cbam_aspp", dataset="synthetic", epochs=epochs, width=4,
                          batch_size=32, train_size=128, test_size=64, val_size=32, milestones=(1,))


def _det(rows):
    return [{k: r[k] for k in DETERMINISTIC_FIELDS} for r in rows]


def test_a_run_folder_of_colabkit_0_2_0_resumes_and_ends_as_an_uninterrupted_run(tmp_path):
    run = tmp_path / "old"
    shutil.copytree(FIXTURE, run)
    with pytest.warns(UserWarning, match=r"trained with colabkit 0\.2\.0 \(84cb35cf27\) and continues"):
        res = train(_exp(3), run, progress=False)
    assert res["status"] == "finished" and res["epochs_done"] == 3
    rows = read_metrics(run / "metrics.csv")
    assert _det(rows[:2]) == _det(read_metrics(FIXTURE / "metrics.csv"))  # kept as they were
    fresh = tmp_path / "fresh"
    train(_exp(3), fresh, progress=False)
    assert _det(rows) == _det(read_metrics(fresh / "metrics.csv"))
    a = torch.load(run / "last.pt", weights_only=True)["model"]
    b = torch.load(fresh / "last.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_same_two_epochs_today_replay_the_saved_history_bit_for_bit(tmp_path):
    res = train(_exp(2), tmp_path, progress=False)
    assert _det(res["history"]) == _det(read_metrics(FIXTURE / "metrics.csv"))
    with open(tmp_path / "metrics.csv") as f, open(FIXTURE / "metrics.csv") as g:
        cut = lambda line: line.split(",")[:len(DETERMINISTIC_FIELDS)]
        assert [cut(l) for l in f] == [cut(l) for l in g]  # the very bytes of those columns
