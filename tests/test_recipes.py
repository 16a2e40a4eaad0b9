"""Training recipes: the report's, unchanged (see test_compat.py for its bit-for-bit replay),
and the fast one: its schedule, its added augmentations, flip test-time augmentation, its
own run folders, and what Table 1 and the comparisons say of it."""
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from colabkit.__main__ import main
from colabkit.data.augment import Augmenter, cutout, random_crop
from colabkit.report.compare import comparison_table
from colabkit.data.sources import load_dataset
from colabkit.experiments import PRESETS, get_experiment, run_name
from colabkit.rundir.runs import read_metrics, read_predictions, save_predictions, write_json, write_metrics
from colabkit.report.status import queue_status
from colabkit.report.tables import load_runs, results_table, table_markdown
from colabkit.training.resume import ConfigMismatch
from colabkit.training.loop import time_estimate, train
from conftest import independent_predictions


def test_the_fast_recipe_changes_how_a_preset_is_trained_never_the_network():
    for name, preset in PRESETS.items():
        fast = get_experiment(name, recipe="fast")
        assert (fast.model, fast.width, fast.dataset, fast.spatial_kernel) == \
            (preset.model, preset.width, preset.dataset, preset.spatial_kernel)
        a, b = preset.augment, fast.augment  # the preset's own augmentation, with additions
        assert (a.hflip, a.vflip, a.rotate_angles, a.rotate_probs) == (b.hflip, b.vflip, b.rotate_angles, b.rotate_probs)
        assert (b.crop_padding, b.cutout) == (a.crop_padding or 4, 12)
        assert (fast.recipe, fast.nesterov, fast.lr_schedule, fast.tta, fast.epochs) == ("fast", True, "triangle", True, 30)
        assert get_experiment(name) == PRESETS[name]  # the report's recipe is the preset itself
    assert get_experiment("basic", recipe="fast", epochs=None).epochs == 30  # None keeps the recipe's
    assert run_name("01_resnet18_basic", "fast") == "01_resnet18_basic-fast"
    assert run_name("01_resnet18_basic") == "01_resnet18_basic"
    # a length other than the recipe's is part of the name: a trial never becomes the full run
    assert run_name("01_resnet18_basic", "report", 30) == "01_resnet18_basic-30ep"
    assert run_name("01_resnet18_basic", "report", 300) == "01_resnet18_basic"
    assert run_name("01_resnet18_basic", "fast", 30) == "01_resnet18_basic-fast"
    assert run_name("01_resnet18_basic", "fast", 10) == "01_resnet18_basic-fast-10ep"
    # EPOCHS = 0 in a notebook, --epochs 0, epochs=0: the recipe's length, everywhere
    assert get_experiment("basic", epochs=0).epochs == 300
    assert get_experiment("basic", recipe="fast", epochs=0, train_size=0).train_size is None
    with pytest.raises(ValueError, match=r"unknown recipe 'slow'; known: \['fast', 'report'\]"):
        get_experiment("basic", recipe="slow")


def test_fast_schedule_learning_rates_equal_hand_computed_values():
    e = get_experiment("basic", recipe="fast", epochs=10)  # lr 0.2, a fifth of the run rising
    # t = (epoch - 1 + done) / 10; lr = 0.2 t / 0.2 before t = 0.2, then 0.2 (1 - t) / 0.8
    assert e.lr_at(1, 0.5) == pytest.approx(0.05)
    assert e.lr_at(2, 0.25) == pytest.approx(0.125)
    assert e.lr_at(2, 1.0) == pytest.approx(0.2)          # the peak, at a fifth of the run
    assert e.lr_at(6, 0.5) == pytest.approx(0.1125)
    assert e.lr_at(10, 1.0) == pytest.approx(0.0)         # 0 at the very end
    r = get_experiment("basic", epochs=9)                  # the report's: steps after 3 and 6
    assert [r.lr_at(k, d) for k, d in ((3, 0.9), (4, 0.0), (7, 0.5))] == \
        [pytest.approx(0.1), pytest.approx(0.01), pytest.approx(0.001)]


def test_the_fast_schedule_is_applied_at_every_step(tiny, tmp_path, monkeypatch):
    seen = []
    real = torch.optim.SGD.step

    def step(self, *a, **k):
        seen.append(self.param_groups[0]["lr"])
        return real(self, *a, **k)

    monkeypatch.setattr(torch.optim.SGD, "step", step)
    exp = tiny("basic", recipe="fast", epochs=2, milestones=None)  # 128 images / 32: 4 steps
    train(exp, tmp_path, progress=False)
    want = [exp.lr_at(e, i / 4) for e in (1, 2) for i in (1, 2, 3, 4)]
    assert seen == pytest.approx(want) and seen[0] != seen[1]  # it moves within an epoch


def _per_image_crop_and_cutout(x, padding, size, g):
    """The reference: one image at a time, by slicing, with the same random numbers."""
    n, _, h, w = x.shape
    off = torch.randint(0, 2 * padding + 1, (2, n), generator=g)
    centre = torch.stack([torch.randint(0, h, (n,), generator=g), torch.randint(0, w, (n,), generator=g)])
    out = []
    for i in range(n):
        img = F.pad(x[i:i + 1], (padding,) * 4, mode="reflect")[0]
        img = img[:, off[0, i]:off[0, i] + h, off[1, i]:off[1, i] + w].clone()
        top, left = int(centre[0, i]) - size // 2, int(centre[1, i]) - size // 2
        img[:, max(top, 0):max(top + size, 0), max(left, 0):max(left + size, 0)] = 0
        out.append(img)
    return torch.stack(out)


def test_translate_and_cutout_equal_a_per_image_reference_and_split_exactly_across_ranks():
    x = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    got = cutout(random_crop(x, 4, torch.Generator().manual_seed(5)), 12, None)  # warm call
    g = torch.Generator().manual_seed(5)
    got = cutout(random_crop(x, 4, g), 12, g)
    want = _per_image_crop_and_cutout(x, 4, 12, torch.Generator().manual_seed(5))
    assert torch.equal(got, want)
    zeros = (got == 0).all(1).sum(dim=(1, 2))  # squares cut at the border are smaller
    assert zeros.max() == 144 and zeros.min() < 144
    aug = Augmenter(get_experiment("da", recipe="fast").augment)  # flips, rotation, crop, cutout
    whole = aug(x, torch.Generator().manual_seed(9))
    for world in (2, 4):
        per = 16 // world
        parts = [aug(x[r * per:(r + 1) * per], torch.Generator().manual_seed(9), (r * per, (r + 1) * per, 16))
                 for r in range(world)]
        assert torch.equal(torch.cat(parts), whole)


def test_flip_tta_accuracy_equals_an_independent_evaluation_of_both_views(tiny, tmp_path):
    exp = tiny("basic", recipe="fast", epochs=2, milestones=None)
    res = train(exp, tmp_path, progress=False)
    rows = read_metrics(tmp_path / "metrics.csv")
    assert all(r["test_acc_tta"] is not None for r in rows)
    best = max(rows, key=lambda r: (r["test_acc_tta"], -r["epoch"]))  # chosen on TTA accuracy
    assert (res["best_epoch"], res["best_acc"], res["accuracy"]) == (best["epoch"], best["test_acc_tta"], "flip TTA")
    state = torch.load(tmp_path / "best.pt", weights_only=True)
    data = load_dataset("synthetic", seed=0).subset(128, 64, 0)
    p = read_predictions(tmp_path / "predictions.npz")
    both = independent_predictions(state, data, tta=True)
    assert np.array_equal(p["pred_tta"], both) and np.array_equal(p["pred"], independent_predictions(state, data))
    assert 100 * (both == data.y_test).mean() == pytest.approx(best["test_acc_tta"])
    assert not np.array_equal(both, independent_predictions(state, data))  # TTA changed something


def test_a_fast_run_never_continues_a_report_run(tiny, tmp_path, capsys):
    train(tiny("basic", epochs=1), tmp_path, progress=False)
    for allow in (False, True):
        with pytest.raises(ConfigMismatch, match=r"another recipe .*recipe: saved 'report', now 'fast'.*new run folder"):
            train(tiny("basic", recipe="fast", epochs=2), tmp_path, progress=False, allow_config_change=allow)
    assert [r["epoch"] for r in read_metrics(tmp_path / "metrics.csv")] == [1]
    args = ["train", "--experiment", "basic", "--run-dir", str(tmp_path), "--dataset", "synthetic",
            "--width", "4", "--batch-size", "32", "--train-size", "128", "--test-size", "64",
            "--milestones", "2", "--device", "cpu", "--quiet", "--recipe", "fast", "--allow-config-change"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "another recipe" in err


def _crafted_run(folder, exp, accs, pred, pred_tta=None):
    """A run folder as train() leaves it, with chosen numbers: accs = [(test_acc,
    test_acc_tta or None)] per epoch; predictions of 8 test images at the best epoch."""
    folder.mkdir(parents=True)
    write_json(folder / "config.json", exp.to_dict())
    rows = [{"epoch": e, "lr": 0.1, "train_loss": 1.0, "train_acc": 50.0, "test_loss": 1.0,
             "test_acc": a, "seconds": 1.0, "images_per_s": 1.0, "time": "", "test_acc_tta": t}
            for e, (a, t) in enumerate(accs, 1)]
    write_metrics(folder / "metrics.csv", rows)
    preds = {"pred": pred} if pred_tta is None else {"pred": pred, "pred_tta": pred_tta}
    save_predictions(folder / "predictions.npz", 1, preds, LABELS)


LABELS = np.array([0, 1, 2, 3, 0, 1, 2, 3])


def test_table_1_and_the_comparisons_say_the_recipe_and_which_accuracy(tiny, tmp_path):
    report, fast = tiny("basic", epochs=2), tiny("basic", recipe="fast", epochs=2)
    _crafted_run(tmp_path / "basic-s0", report, [(25.0, None), (50.0, None)],
                 pred=np.array([0, 1, 2, 3, 3, 3, 3, 0]))             # 4 of 8 right
    # flip TTA picks epoch 1 (87.5 > 75), where the plain accuracy is 37.5
    _crafted_run(tmp_path / "basic-fast-s0", fast, [(37.5, 87.5), (50.0, 75.0)],
                 pred=np.array([0, 1, 2, 0, 1, 0, 0, 0]),             # 3 of 8 right
                 pred_tta=np.array([0, 1, 2, 3, 0, 1, 2, 0]))         # 7 of 8 right
    _crafted_run(tmp_path / "basic-s1", replace(report, seed=1), [(25.0, None), (62.5, None)],
                 pred=np.array([0, 1, 2, 3, 0, 3, 3, 0]))             # 5 of 8 right
    _crafted_run(tmp_path / "basic-fast-s1", replace(fast, seed=1), [(50.0, 75.0), (37.5, 62.5)],
                 pred=np.array([0, 1, 2, 3, 3, 3, 3, 0]),             # 4 of 8 right
                 pred_tta=np.array([0, 1, 2, 3, 0, 1, 0, 0]))         # 6 of 8 right
    runs = load_runs(tmp_path)
    per_run = results_table(runs, by="run").set_index("run")
    row = per_run.loc["basic-fast-s0"]
    assert (row["experiment"], row["recipe"], row["accuracy"]) == ("basic-fast", "fast", "flip TTA")
    assert (row["best_epoch"], row["best_acc"], row["best_acc_plain"]) == (1, 87.5, 37.5)
    assert (per_run.loc["basic-s0", "recipe"], per_run.loc["basic-s0", "accuracy"],
            per_run.loc["basic-s0", "best_acc"]) == ("report", "plain", 50.0)
    text = table_markdown(results_table(runs))
    assert "| model | recipe | data set |" in text and "| accuracy | best test acc. (%) |" in text
    assert "| basic-fast: resnet18 | fast | synthetic |" in text and "| flip TTA | 81.250 ± 8.839 | 1.0 (mean) (test) |" in text
    assert "| basic: resnet18 | report | synthetic |" in text and "| plain | 56.250 ± 8.839 | 2.0 (mean) (test) |" in text
    # report runs and fast runs: compared on plain accuracy, never one of each
    cmp = comparison_table(tmp_path).set_index(["a", "b"]).loc[("basic", "basic-fast")]
    assert cmp["accuracy"] == "plain" and cmp["diff"] == pytest.approx((37.5 + 50) / 2 - (50 + 62.5) / 2)
    # McNemar on the plain predictions, both seeds: one image right only for basic in each
    assert (cmp["only_a_right"], cmp["only_b_right"], cmp["paired_seeds"]) == (2, 0, 2)
    assert "-12.50 points of test accuracy (95% CI" in cmp["sentence"]
    # two fast runs are compared with flip TTA, on their TTA predictions
    _crafted_run(tmp_path / "cbam-fast-s0", tiny("cbam", recipe="fast", epochs=2),
                 [(50.0, 62.5), (37.5, 50.0)], pred=np.array([0, 1, 2, 3, 3, 3, 3, 0]),
                 pred_tta=np.array([0, 1, 2, 3, 0, 0, 0, 0]))         # 5 of 8 right
    cmp = comparison_table(tmp_path).set_index(["a", "b"]).loc[("basic-fast", "cbam-fast")]
    assert cmp["accuracy"] == "flip TTA" and cmp["diff"] == pytest.approx(62.5 - 87.5)
    assert (cmp["only_a_right"], cmp["only_b_right"]) == (2, 0)
    assert "points of test accuracy with flip TTA" in cmp["sentence"]


def test_the_time_estimate_says_what_fits_the_budget(tmp_path):
    assert time_estimate(299, 36.0, 1.0, None) == \
        "Estimate from this epoch (36 s, warm-up included): 3.0 h for the 299 epochs left."
    # under an hour in minutes, under 90 s in seconds: never "0.00 h"
    assert "20 min for the 20 epochs left" in time_estimate(20, 60.0, 1.0, None)
    assert "48 s for the 4 epochs left" in time_estimate(4, 12.0, 1.0, None)
    assert time_estimate(100, 60.0, 10.0, 70.0).endswith(
        "the budget of 70 min covers about 60 of them; run again in the next session to continue.")
    assert time_estimate(10, 60.0, 10.0, 70.0).endswith("they fit the budget of 70 min.")
    # the queue by the fast recipe (30 epochs planned): 10 done of 60 s each, a 45-minute budget
    for i, (name, _) in enumerate([("01_resnet18_basic-fast", 0), ("02_resnet18_da-fast", 0),
                                   ("03_resnet18_da_cbam-fast", 0)]):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"name": "basic", "epochs": 20}))
        rows = "".join(f"{e},0.1,1,50,1,50,,,60.0,1,t\n" for e in range(1, 11))
        (folder / "metrics.csv").write_text("epoch,lr,train_loss,train_acc,test_loss,test_acc,"
                                            "val_loss,val_acc,seconds,images_per_s,time\n" + rows)
    table = queue_status(tmp_path, max_minutes=45, recipe="fast")
    assert list(table["run"]) == ["01_resnet18_basic-fast", "02_resnet18_da-fast",
                                  "03_resnet18_da_cbam-fast", "04_resnet18_da_cbam_aspp-fast"]
    # 20 min left each: the first two fit (40 min), the third starts, the fourth (30 epochs,
    # estimated from the others' 60 s) waits for another session
    assert list(table["fits"]) == ["yes", "yes", "partly", "no"]
    assert table["hours_left"].iloc[3] == pytest.approx(30 * 60 / 3600)


def test_extending_a_fast_run_is_refused_unless_asked_then_marked_in_table_1(tiny, tmp_path, capsys):
    fast = tmp_path / "runs" / "fast"
    train(tiny("basic", recipe="fast", epochs=1, milestones=None), fast, progress=False)
    with pytest.raises(ConfigMismatch, match=r"planned for 1 epochs and has trained 1; 2 epochs "
                                             r"would move its learning-rate schedule"):
        train(tiny("basic", recipe="fast", epochs=2, milestones=None), fast, progress=False)
    assert len(read_metrics(fast / "metrics.csv")) == 1  # nothing lost, nothing trained
    train(tiny("basic", recipe="fast", epochs=2, milestones=None), fast, progress=False,
          allow_config_change=True)
    assert "continuing as asked" in capsys.readouterr().out
    lrs = [r["lr"] for r in read_metrics(fast / "metrics.csv")]
    # epoch 1 as it was trained (the triangle starts at 0); epoch 2 halfway through the new
    # 2-epoch triangle, past its 20% warm-up: 0.2 * (1 - 0.5) / (1 - 0.2) = 0.125
    assert lrs == [0.0, pytest.approx(0.2 * 0.5 / 0.8)]
    table = results_table(load_runs(tmp_path / "runs"), by="run")
    assert bool(table["schedule_changed"].iloc[0])
    train(tiny("basic", epochs=1), tmp_path / "report", progress=False)
    train(tiny("basic", epochs=2), tmp_path / "report", progress=False)  # steps at fixed epochs
    assert "planned for" not in capsys.readouterr().out
