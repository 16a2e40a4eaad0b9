"""colabkit.report.write, colabkit.report.tables, colabkit.report.figures, colabkit.report.compare, colabkit.report.stats, colabkit.report.plotting

The report from run folders alone."""
import shutil

import numpy as np
import pandas as pd
import pytest

from colabkit.experiments import get_experiment
from colabkit.report.figures import FIGURES, plot_curves
from colabkit.report.tables import ReportError, load_runs, results_table, table_markdown
from colabkit.report.write import confusion_matrix, per_class_accuracy, write_report
from colabkit.rundir.runs import read_metrics, write_metrics
from colabkit.training.loop import train
from conftest import drawn_png, independent_predictions



def _tiny(name, **kw):
    base = dict(dataset="synthetic", epochs=3, batch_size=32, width=4, train_size=128,
                test_size=64, milestones=(2,))
    base.update(kw)
    return get_experiment(name, **base)


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    """Real short runs: two seeds of one experiment and one of another."""
    root = tmp_path_factory.mktemp("runs")
    train(_tiny("basic", seed=0), root / "basic_s0", progress=False)
    train(_tiny("basic", seed=1), root / "basic_s1", progress=False)
    train(_tiny("da", epochs=2), root / "da", progress=False)
    return root


def _lines(fig):
    return [l for l in fig.axes[0].get_lines() if not l.get_label().startswith("_")
            and l.get_label() != "lr step"]


def test_load_runs_joins_metrics_with_config(runs_dir):
    df = load_runs(runs_dir)
    assert sorted(df["run"].unique()) == ["basic_s0", "basic_s1", "da"]
    assert len(df) == 3 + 3 + 2
    da = df[df["run"] == "da"]
    assert set(da["experiment"]) == {"da"} and set(da["model"]) == {"resnet18"}
    assert "vertical flip p=0.1" in da["augment"].iloc[0]
    assert list(df.columns[:7]) == ["run", "experiment", "model", "dataset", "seed", "augment",
                                    "epochs_planned"]


def test_report_files_are_written_and_not_empty(runs_dir, tmp_path):
    written = write_report(runs_dir, tmp_path / "out")
    names = sorted(p.name for paths in written.values() for p in paths)
    expected = {f"{stem}.{ext}" for stem, _, _ in FIGURES.values() for ext in ("png", "pdf")}
    assert expected | {"table1.md", "table1.csv", "runs.csv", "status.csv", "comparison.csv",
                       "comparison.md", "per_class.csv", "per_class.md"} == set(names)
    out = tmp_path / "out"
    for stem, _, _ in FIGURES.values():  # 7 x 4.2 inches at 150 dpi, lines drawn
        drawn_png(out / f"{stem}.png", (1050, 630))
        assert (out / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-"
    # the files hold the tables computed from the logs, not just bytes
    runs = load_runs(runs_dir)
    table = pd.read_csv(out / "table1.csv").set_index("experiment")
    want = results_table(runs).set_index("experiment")
    assert list(table.index) == list(want.index) == ["basic", "da"]
    np.testing.assert_allclose(table["best_acc"], want["best_acc"])
    assert (out / "table1.md").read_text() == table_markdown(results_table(runs))
    per_run = pd.read_csv(out / "runs.csv").set_index("run")
    for run in ("basic_s0", "basic_s1", "da"):
        best = max(read_metrics(runs_dir / run / "metrics.csv"), key=lambda r: (r["test_acc"], -r["epoch"]))
        assert (per_run.loc[run, "best_acc"], per_run.loc[run, "best_epoch"]) == (best["test_acc"], best["epoch"])
    status = pd.read_csv(out / "status.csv").set_index("run")
    assert dict(status["state"]) == {"basic_s0": "finished", "basic_s1": "finished", "da": "finished"}
    comparison = pd.read_csv(out / "comparison.csv")
    assert (out / "comparison.md").read_text().count("\n- ") == len(comparison) == 1
    assert comparison["sentence"].iloc[0] in (out / "comparison.md").read_text()
    per_class = pd.read_csv(out / "per_class.csv", index_col=0)
    assert list(per_class.columns) == ["test images", "basic_s0", "basic_s1", "da"]
    assert per_class["test images"].sum() == 64
    md = (out / "per_class.md").read_text().splitlines()
    assert sum(line.startswith("| ") for line in md) == 1 + len(per_class)  # header + classes


def test_table_best_accuracy_and_epoch_equal_the_logs_maximum(runs_dir):
    per_run = results_table(load_runs(runs_dir), by="run").set_index("run")
    for run in per_run.index:
        rows = read_metrics(runs_dir / run / "metrics.csv")
        best = max(rows, key=lambda r: (r["test_acc"], -r["epoch"]))
        assert per_run.loc[run, "best_acc"] == best["test_acc"]
        assert per_run.loc[run, "best_epoch"] == best["epoch"]
        assert per_run.loc[run, "final_acc"] == rows[-1]["test_acc"]
        assert per_run.loc[run, "epochs_done"] == len(rows)


def test_several_seeds_give_mean_and_sd(runs_dir):
    table = results_table(load_runs(runs_dir)).set_index("experiment")
    a = results_table(load_runs(runs_dir), by="run").set_index("run")
    accs = [a.loc["basic_s0", "best_acc"], a.loc["basic_s1", "best_acc"]]
    assert table.loc["basic", "runs"] == 2
    assert table.loc["basic", "best_acc"] == pytest.approx(np.mean(accs))
    assert table.loc["basic", "best_acc_sd"] == pytest.approx(np.std(accs, ddof=1))
    assert table.loc["da", "runs"] == 1 and np.isnan(table.loc["da", "best_acc_sd"])
    assert table.loc["basic", "report_best_acc"] == 95.0
    md = table_markdown(results_table(load_runs(runs_dir)))
    assert f"{np.mean(accs):.3f} ± {np.std(accs, ddof=1):.3f}" in md
    assert "95.000 (286)" not in md and "horizontal flip p=0.5" in md  # tiny runs: not comparable


@pytest.mark.parametrize("metric", list(FIGURES))
def test_each_figure_has_one_line_per_run_with_a_point_per_logged_epoch(runs_dir, metric):
    df = load_runs(runs_dir)
    fig = plot_curves(df, metric)
    lines = {l.get_label(): l for l in _lines(fig)}
    assert sorted(lines) == ["basic_s0", "basic_s1", "da"]
    for run, line in lines.items():
        rows = read_metrics(runs_dir / run / "metrics.csv")
        assert list(line.get_xdata()) == [r["epoch"] for r in rows]
        assert np.allclose(line.get_ydata(), [r[metric] for r in rows])
    # the learning-rate step after epoch 2 (milestone 2) is marked
    vlines = [l for l in fig.axes[0].get_lines() if l.get_linestyle() == "--" and len(l.get_xdata()) == 2]
    assert any(np.allclose(l.get_xdata(), [2.5, 2.5]) for l in vlines)


def test_a_gap_in_the_log_is_a_gap_in_the_line(runs_dir, tmp_path):
    shutil.copytree(runs_dir / "basic_s0", tmp_path / "gappy")
    rows = read_metrics(tmp_path / "gappy" / "metrics.csv")
    write_metrics(tmp_path / "gappy" / "metrics.csv", [r for r in rows if r["epoch"] != 2])
    line = _lines(plot_curves(load_runs(tmp_path), "test_acc"))[0]
    x, y = np.asarray(line.get_xdata()), np.asarray(line.get_ydata(), dtype=float)
    assert list(x) == [1, 2, 3] and np.isnan(y[1]) and not np.isnan(y[[0, 2]]).any()


def test_empty_folder_and_runs_without_epochs_give_clear_messages(tmp_path, runs_dir):
    with pytest.raises(ReportError, match="holds no run folders.*python -m colabkit train"):
        load_runs(tmp_path)
    (tmp_path / "started").mkdir()
    shutil.copy(runs_dir / "da" / "config.json", tmp_path / "started" / "config.json")
    with pytest.raises(ReportError, match="none has a finished epoch"):
        load_runs(tmp_path)
    # a run in progress beside finished ones is simply reported as far as it got
    shutil.copytree(runs_dir / "da", tmp_path / "da")
    assert sorted(load_runs(tmp_path)["run"].unique()) == ["da"]
    # a single run folder given directly works too
    assert list(load_runs(runs_dir / "da")["run"].unique()) == ["da"]


def test_confusion_matrix_from_best_checkpoint_matches_logged_accuracy(runs_dir, tmp_path):
    cm, classes = confusion_matrix(runs_dir / "basic_s0")
    assert cm.shape == (12, 12) and len(classes) == 12 and cm.sum() == 64
    rows = read_metrics(runs_dir / "basic_s0" / "metrics.csv")
    best = max(rows, key=lambda r: (r["test_acc"], -r["epoch"]))
    assert 100.0 * np.trace(cm) / cm.sum() == pytest.approx(best["test_acc"])
    acc = per_class_accuracy(cm, classes)
    assert list(acc.index) == classes and acc.between(0, 100).all()
    written = write_report(runs_dir, tmp_path, confusion=True)
    assert (tmp_path / "confusion_da.png").stat().st_size > 0
    assert len(pd.read_csv(tmp_path / "per_class_basic_s0.csv")) == 12
    assert "confusion_basic_s1" in written


def test_the_confusion_matrix_comes_from_predictions_npz_and_the_model_path_agrees(runs_dir, tmp_path,
                                                                                   monkeypatch):
    """With predictions.npz the matrix is counted from it, no network run (a DDP run, which
    saves none, takes the model path); both give the same matrix, and it is the one an
    independent count of the saved labels and predictions gives."""
    import shutil

    import colabkit.report.write as report_mod
    from colabkit.rundir.runs import read_predictions

    run = tmp_path / "run"
    shutil.copytree(runs_dir / "basic_s0", run)
    saved = read_predictions(run / "predictions.npz")
    k = 12
    expected = np.zeros((k, k), dtype=np.int64)
    for t, p in zip(saved["label"], saved["pred"]):
        expected[t, p] += 1

    def no_model(*a, **k):
        raise AssertionError("the network was run although predictions.npz holds the answer")
    with monkeypatch.context() as m:
        m.setattr(report_mod, "predict", no_model)
        cm, classes = confusion_matrix(run)
    assert np.array_equal(cm, expected) and len(classes) == k
    (run / "predictions.npz").unlink()  # as a DDP run: the model path
    cm_model, _ = confusion_matrix(run)
    assert np.array_equal(cm_model, expected)


def test_the_confusion_matrix_ignores_flip_tta_and_predictions_of_another_epoch(runs_dir, tmp_path):
    """Counted from ``pred`` (plain), never ``pred_tta``; a predictions.npz saved at another
    epoch than best.pt's is not the best epoch's: the network is run instead."""
    import shutil

    from colabkit.rundir.runs import read_predictions, save_predictions

    run = tmp_path / "run"
    shutil.copytree(runs_dir / "basic_s0", run)
    saved = read_predictions(run / "predictions.npz")
    truth, _ = confusion_matrix(run)
    wrong = (saved["pred"] + 1) % 12  # every prediction another class
    save_predictions(run / "predictions.npz", saved["epoch"], {"pred": saved["pred"], "pred_tta": wrong},
                     saved["label"])
    assert np.array_equal(confusion_matrix(run)[0], truth)  # pred_tta left alone
    save_predictions(run / "predictions.npz", saved["epoch"] + 1, {"pred": wrong}, saved["label"])
    assert np.array_equal(confusion_matrix(run)[0], truth)  # stale: the model path


def test_committed_figures_table_is_what_the_committed_logs_give():
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    committed = pd.read_csv(repo / "figures" / "table1.csv")
    fresh = results_table(load_runs(repo / "logs"))
    assert list(committed["experiment"]) == list(fresh["experiment"])
    assert np.allclose(committed["best_acc"], fresh["best_acc"])
    assert list(committed["best_epoch"]) == list(fresh["best_epoch"])


# ------------------------------------------------------------ comparisons ----

def test_mcnemar_exact_p_values_agree_with_a_hand_count():
    from colabkit.report.stats import mcnemar
    # 12 discordant images, 10 against 2: 2 * (C(12,0) + C(12,1) + C(12,2)) / 2**12
    assert mcnemar(10, 2) == pytest.approx(2 * (1 + 12 + 66) / 4096)
    assert mcnemar(2, 10) == mcnemar(10, 2) and mcnemar(5, 5) == 1.0 and mcnemar(0, 0) == 1.0
    assert mcnemar(0, 6) == pytest.approx(2 / 64)
    # large counts: the normal approximation with continuity correction agrees closely
    import math
    b, c = 420, 520
    z = (abs(b - c) - 1) / math.sqrt(b + c)
    assert mcnemar(b, c) == pytest.approx(math.erfc(z / math.sqrt(2)), rel=0.05)


def test_welch_interval_and_bootstrap_agree_with_independent_computations():
    from colabkit.report.stats import paired_bootstrap, welch_interval
    # means 91 and 93, variances 1: se = sqrt(2/3), df = 4, t = 2.776
    lo, hi = welch_interval([90, 91, 92], [92, 93, 94])
    h = 2.776 * (2 / 3) ** 0.5
    assert (lo, hi) == (pytest.approx(2 - h, abs=1e-3), pytest.approx(2 + h, abs=1e-3))
    # beyond 30 degrees of freedom t is not yet 1.96: 24 seeds a side with equal spread give
    # Welch's df = 2 * (24 - 1) = 46, where t(0.975, 46) = 2.0129 (printed tables)
    base = np.linspace(90.0, 92.0, 24)
    lo, hi = welch_interval(list(base), list(base + 2.0))
    se = (2 * base.var(ddof=1) / 24) ** 0.5
    assert (hi - lo) / 2 == pytest.approx(2.0129 * se, rel=2e-4)
    assert (hi - lo) / 2 > 1.96 * se * 1.02
    rng = np.random.default_rng(1)
    a = rng.random(4000) < 0.80
    b = np.where(rng.random(4000) < 0.9, a, rng.random(4000) < 0.85)
    d = b.astype(float) - a
    se = d.std(ddof=1) / len(d) ** 0.5
    lo, hi = paired_bootstrap(a, b)
    assert lo == pytest.approx(100 * (d.mean() - 1.96 * se), abs=0.25)
    assert hi == pytest.approx(100 * (d.mean() + 1.96 * se), abs=0.25)


def test_comparison_pairs_experiments_on_the_same_test_images(runs_dir, tmp_path):
    from colabkit.report.compare import comparison_table
    from colabkit.rundir.runs import read_predictions
    table = comparison_table(runs_dir)
    row = table[(table["a"] == "basic") & (table["b"] == "da")].iloc[0]
    pa, pb = (read_predictions(runs_dir / r / "predictions.npz") for r in ("basic_s0", "da"))
    assert np.array_equal(pa["label"], pb["label"]) and row["paired_seeds"] == 1
    ca, cb = pa["pred"] == pa["label"], pb["pred"] == pb["label"]
    assert (row["only_a_right"], row["only_b_right"]) == (int((ca & ~cb).sum()), int((~ca & cb).sum()))
    per_run = results_table(load_runs(runs_dir), by="run").set_index("run")
    # one seed of da: the matched pair (seed 0), with a paired bootstrap interval around it
    assert row["diff"] == pytest.approx(per_run.loc["da", "best_acc"] - per_run.loc["basic_s0", "best_acc"])
    assert row["ci_low"] <= row["diff"] <= row["ci_high"] and row["interval"].startswith("seed 0")
    assert "McNemar p = " in row["sentence"]


def test_predictions_file_holds_the_best_epochs_test_predictions(runs_dir):
    from colabkit.rundir.runs import read_predictions
    p = read_predictions(runs_dir / "basic_s0" / "predictions.npz")
    rows = read_metrics(runs_dir / "basic_s0" / "metrics.csv")
    best = max(rows, key=lambda r: (r["test_acc"], -r["epoch"]))
    assert p["epoch"] == best["epoch"] and len(p["pred"]) == 64
    assert 100 * (p["pred"] == p["label"]).mean() == pytest.approx(best["test_acc"])
    # the same predictions from best.pt's weights, computed without colabkit's evaluation
    import torch
    from colabkit.data.sources import load_dataset
    state = torch.load(runs_dir / "basic_s0" / "best.pt", weights_only=True)
    assert state["epoch"] == best["epoch"]
    data = load_dataset("synthetic", seed=0).subset(128, 64, 0)
    assert np.array_equal(p["label"], data.y_test)
    assert np.array_equal(p["pred"], independent_predictions(state, data))


def test_best_epoch_is_chosen_on_validation_when_there_is_one(tmp_path):
    from colabkit.rundir.runs import write_json
    run = tmp_path / "r"
    run.mkdir()
    write_json(run / "config.json", _tiny("basic", val_size=20).to_dict())
    rows = [{"epoch": e, "lr": 0.1, "train_loss": 1.0, "train_acc": 50.0, "test_loss": 1.0,
             "test_acc": t, "val_loss": 1.0, "val_acc": v, "seconds": 1.0, "images_per_s": 1.0,
             "time": ""} for e, t, v in [(1, 40.0, 50.0), (2, 60.0, 45.0), (3, 55.0, 70.0), (4, 58.0, 70.0)]]
    write_metrics(run / "metrics.csv", rows)
    r = results_table(load_runs(tmp_path), by="run").iloc[0]
    assert (r["best_epoch"], r["best_acc"], r["selected_on"]) == (3, 55.0, "val")  # not epoch 2's 60
    from colabkit.training.loop import _results
    res = _results(_tiny("basic", val_size=20), run, read_metrics(run / "metrics.csv"), "finished")
    assert (res["best_epoch"], res["best_acc"], res["best_val_acc"]) == (3, 55.0, 70.0)


def test_short_runs_never_stand_beside_the_reports_numbers(runs_dir):
    text = table_markdown(results_table(load_runs(runs_dir)))
    assert "95.000" not in text and "not comparable" in text
    assert "| synthetic | 128 | 4 | 3/3 |" in text
    table = results_table(load_runs(runs_dir))  # the same rows in the report's setting
    table = table.assign(dataset="cifar12", width=64, epochs_done=300, epochs_planned=300,
                         train_images=55_000)
    text = table_markdown(table)
    assert "95.000 (286)" in text and "93.409 (249)" in text and "not comparable" not in text


def test_the_sentence_keeps_the_recipe_question_apart_from_mcnemars():
    from colabkit.report.compare import _sentence
    wide = _sentence("a", "b", 2.0, -1.0, 5.0, "over seeds, 3 and 3 runs", 1e-9, 100, 200, 2000, 3)
    assert "The interval over seeds includes 0: these seeds do not show that one recipe beats the other" in wide
    assert "the trained models disagree beyond chance" in wide
    narrow = _sentence("a", "b", 2.0, 0.5, 3.5, "over seeds, 3 and 3 runs", 0.2, 100, 110, 2000, 3)
    assert "The interval over seeds excludes 0: the recipes differ" in narrow and "do not disagree" in narrow
    one = _sentence("a", "b", 2.0, 0.5, 3.5, "seed 0, bootstrap over test images", 0.01, 5, 9, 100, 1)
    assert "One seed: the spread between seeds is not measured" in one


def _fake_run(folder, exp, accs):
    """A run folder as train() leaves it, with chosen test accuracies (one per epoch)."""
    from colabkit.rundir.runs import write_json
    folder.mkdir(parents=True)
    write_json(folder / "config.json", exp.to_dict())
    write_metrics(folder / "metrics.csv", [
        {"epoch": e, "lr": exp.lr_at(e), "train_loss": 1.0, "train_acc": 50.0, "test_loss": 1.0,
         "test_acc": a, "seconds": 1.0, "images_per_s": 1.0, "time": "t"}
        for e, a in enumerate(accs, 1)])


def test_table_1_groups_by_the_whole_configuration_and_flags_a_seed_run_twice(tmp_path):
    runs = tmp_path / "runs"
    # four seed-0 runs of basic, of 3, 9, 12 and 30 epochs: four configurations, four rows
    for epochs, best in ((3, 40.0), (9, 50.0), (12, 60.0), (30, 70.0)):
        _fake_run(runs / f"basic-{epochs}", get_experiment("basic", epochs=epochs),
                  [best - 1] * (epochs - 1) + [best])
    # two seeds of one configuration: one row, averaged; the same seed twice: flagged
    _fake_run(runs / "da-s0", get_experiment("da", epochs=3, seed=0), [10.0, 20.0, 30.0])
    _fake_run(runs / "da-s1", get_experiment("da", epochs=3, seed=1), [10.0, 20.0, 50.0])
    _fake_run(runs / "cbam-a", get_experiment("cbam", epochs=2), [10.0, 80.0])
    _fake_run(runs / "cbam-b", get_experiment("cbam", epochs=2), [90.0, 10.0])
    table = results_table(load_runs(runs))
    basic = table[table["experiment"].str.startswith("basic")].set_index("experiment")
    assert sorted(basic.index) == ["basic [epochs=12]", "basic [epochs=30]", "basic [epochs=3]",
                                   "basic [epochs=9]"]
    assert list(basic["runs"]) == [1, 1, 1, 1]
    assert basic.loc["basic [epochs=30]", "best_acc"] == 70.0
    assert basic.loc["basic [epochs=3]", "best_epoch"] == 3
    da = table[table["experiment"] == "da"]
    assert len(da) == 1 and da["best_acc"].iloc[0] == 40.0 and da["seeds"].iloc[0] == "0,1"
    cbam = table[table["experiment"] == "cbam"]
    assert len(cbam) == 2 and sorted(cbam["best_acc"]) == [80.0, 90.0]  # not 85 ± 7
    assert set(cbam["note"]) == {"seed 0 run more than once: runs not averaged"}
    md = table_markdown(table)
    assert "cbam-a: seed 0 run more than once" in md and "cbam-b: seed 0 run more than once" in md


def test_a_run_whose_schedule_changed_mid_run_is_never_the_reports_setting(tmp_path):
    exp = get_experiment("basic")  # the report's setting: 300 epochs, steps after 100 and 200
    _fake_run(tmp_path / "runs" / "plain", exp, [50.0] * 300)
    _fake_run(tmp_path / "runs" / "moved", exp, [50.0] * 300)
    moved = tmp_path / "runs" / "moved" / "metrics.csv"
    rows = read_metrics(moved)
    for r in rows[:3]:  # a 3-epoch trial's schedule (0.1, 0.01, 0.001) under the first epochs
        r["lr"] = {1: 0.1, 2: 0.01, 3: 0.001}[r["epoch"]]
    write_metrics(moved, rows)
    runs = load_runs(tmp_path / "runs")
    per_run = results_table(runs, by="run").set_index("run")
    assert per_run.loc["moved", "schedule_changed"] and not per_run.loc["plain", "schedule_changed"]
    table = results_table(runs).set_index("experiment")
    assert sorted(table.index) == ["basic", "basic [schedule changed]"]
    md = table_markdown(table.reset_index())
    assert md.count("95.000 (286)") == 1  # beside the plain run only
    assert "not comparable (its learning-rate schedule changed mid-run)" in md


def test_table_1_names_the_data_and_gpu_of_a_run_that_is_not_on_cifar_12(tmp_path):
    """bench/gpu_check.sh's runs (logs/gpu): environment.json names the GPU and the data set
    in words; Table 1 says both beside the row, and that it is not comparable. A CIFAR-12 run
    in the report's setting on a GPU keeps the report's number; a run whose environment says
    neither keeps the labels it had."""
    from colabkit.rundir.runs import write_json
    runs = tmp_path / "runs"
    gpu = {"gpu": "NVIDIA H200", "device": "cuda:0"}
    cases = [("basic-fast-s0", get_experiment("basic", recipe="fast", dataset="folder", epochs=3, tta=False),
              {**gpu, "data": "CIFAR-10"}),
             ("da-s0", get_experiment("da", dataset="cifar10", epochs=3), {"gpu": "Tesla T4"}),
             ("da_cbam", get_experiment("da_cbam"), gpu),  # the report's setting
             ("cbam", get_experiment("cbam", dataset="folder", epochs=3), {"device": "cpu"})]
    for name, exp, env in cases:
        _fake_run(runs / name, exp, [50.0] * exp.epochs)
        write_json(runs / name / "environment.json", env)
    md = table_markdown(results_table(load_runs(runs)))
    rows = {line.split(" | ")[0].strip("| "): line for line in md.splitlines()[2:]}
    assert rows["basic-fast: resnet18"].endswith(
        "| CIFAR-10 on NVIDIA H200, not comparable with the report's CIFAR-12 |")
    assert rows["da: resnet18"].endswith("| cifar10 on Tesla T4, not comparable with the report's CIFAR-12 |")
    assert rows["da_cbam: resnet18_cbam"].endswith("| 94.709 (232) |")
    assert rows["cbam: resnet18_cbam"].endswith("|  |")  # no GPU, no data named: as before


def test_one_experiment_gives_no_comparison_and_says_why(tmp_path):
    from colabkit.report.compare import COMPARISON_COLUMNS, comparison_sentences, comparison_table
    _fake_run(tmp_path / "runs" / "basic-s0", get_experiment("basic", epochs=2, seed=0), [10.0, 20.0])
    _fake_run(tmp_path / "runs" / "basic-s1", get_experiment("basic", epochs=2, seed=1), [10.0, 30.0])
    comparison = comparison_table(tmp_path / "runs")
    assert len(comparison) == 0 and tuple(comparison.columns) == COMPARISON_COLUMNS
    assert list(comparison["sentence"]) == []
    assert comparison_sentences(comparison).startswith("No comparison yet: comparisons need runs of two")
    written = write_report(tmp_path / "runs", tmp_path / "out")
    assert "No comparison yet" in (tmp_path / "out" / "comparison.md").read_text()
    assert (tmp_path / "out" / "table1.md").read_text().count("| basic: resnet18 |") == 1
    assert written["table"][0] == tmp_path / "out" / "table1.md"
