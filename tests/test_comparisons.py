"""colabkit.report.compare, colabkit.report.stats and colabkit.report.tables claim no more than the data says.

A seed run twice is one sample; seeds that all scored alike give no interval over seeds;
Welch's interval is Welch's (unequal sizes and spreads); Table 1 averages only runs of one
whole configuration; per-class accuracy is the plain predictions'. Every expectation is
computed here, by hand or from the formula, from numbers chosen for the test."""
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from colabkit.experiments import get_experiment
from colabkit.report.compare import comparison_table, per_class_table
from colabkit.report.stats import welch_interval
from colabkit.report.tables import load_runs, results_table
from colabkit.report.write import write_report
from colabkit.rundir.runs import save_predictions, write_json, write_metrics

LABELS = np.array([0, 1, 2, 3] * 4)  # 16 test images, 4 per class


def _run(folder, exp, best, pred=None, pred_tta=None, best_tta=None):
    """A run folder as train() leaves it: two epochs, the second the best with test
    accuracy ``best`` (``best_tta`` with flip TTA), and its predictions of LABELS."""
    folder.mkdir(parents=True)
    write_json(folder / "config.json", exp.to_dict())
    rows = [{"epoch": e, "lr": exp.lr_at(e), "train_loss": 1.0, "train_acc": 50.0,
             "test_loss": 1.0, "test_acc": a, "seconds": 1.0, "images_per_s": 1.0, "time": "t"}
            for e, a in ((1, 0.0), (2, best))]
    if best_tta is not None:
        rows[0]["test_acc_tta"], rows[1]["test_acc_tta"] = 0.0, best_tta
    write_metrics(folder / "metrics.csv", rows)
    if pred is not None:
        preds = {"pred": pred} if pred_tta is None else {"pred": pred, "pred_tta": pred_tta}
        save_predictions(folder / "predictions.npz", 2, preds, LABELS)


def _right(n_right):
    """Predictions of LABELS with the first ``n_right`` images right, the rest wrong."""
    pred = LABELS.copy()
    pred[n_right:] = (pred[n_right:] + 1) % 4
    return pred


def _exp(name, seed, **kw):
    return get_experiment(name, dataset="synthetic", epochs=2, seed=seed, **kw)


# ------------------------------------------------------- a seed run twice ----

def test_two_copies_of_a_seed_are_one_seed_in_the_comparison_as_in_table_1(tmp_path):
    """The issue's case: two copies of a seed-0 run of basic and of da, identical. Table 1
    does not average them; the comparison counted them as two seeds each, and Welch's
    zero-spread shortcut said 'the recipes differ' with a point interval."""
    runs = tmp_path / "runs"
    a, b = _right(8), _right(12)  # 50% and 75%: da right on 4 more images, never fewer
    for copy in ("", "-copy"):
        _run(runs / f"basic{copy}", _exp("basic", 0), 50.0, a)
        _run(runs / f"da{copy}", _exp("da", 0), 75.0, b)
    table = results_table(load_runs(runs))
    assert set(table["note"]) == {"seed 0 run more than once: runs not averaged"}
    row = comparison_table(runs).iloc[0]
    assert (row["a"], row["b"]) == ("basic", "da")
    assert not row["interval"].startswith("over seeds") and row["interval"].startswith("seed 0")
    assert row["paired_seeds"] == 1 and (row["only_a_right"], row["only_b_right"]) == (0, 4)
    assert row["diff"] == pytest.approx(25.0)
    assert row["ci_low"] < row["ci_high"]  # the paired bootstrap's, not a point
    assert "excludes 0" not in row["sentence"] and "over seeds" not in row["sentence"]
    assert "One seed: the spread between seeds is not measured" in row["sentence"]
    assert "seed 0 of basic run more than once (basic, basic-copy): counted once, as basic" in row["note"]
    assert "seed 0 of da run more than once (da, da-copy)" in row["note"]
    assert row["note"] in row["sentence"]


def test_a_repeated_seed_beside_other_seeds_counts_once_in_welchs_interval(tmp_path):
    """basic: seed 0 twice (50 and, re-run elsewhere, 90) and seed 1 (60); da: seeds 0
    and 1 (70, 76). Over seeds: basic's first seed-0 run by name and its seed 1, 2 and 2."""
    runs = tmp_path / "runs"
    _run(runs / "basic-s0", _exp("basic", 0), 50.0)
    _run(runs / "basic-s0-again", _exp("basic", 0), 90.0)
    _run(runs / "basic-s1", _exp("basic", 1), 60.0)
    _run(runs / "da-s0", _exp("da", 0), 70.0)
    _run(runs / "da-s1", _exp("da", 1), 76.0)
    row = comparison_table(runs).iloc[0]
    assert row["interval"] == "over seeds, 2 and 2 runs"
    assert row["diff"] == pytest.approx((70 + 76) / 2 - (50 + 60) / 2)  # not - (50+60+90)/3
    # Welch by hand: variances 50 and 18 over 2 seeds each
    se = math.sqrt(50 / 2 + 18 / 2)
    df = se ** 4 / ((50 / 2) ** 2 + (18 / 2) ** 2)
    half = scipy_stats.t.ppf(0.975, df) * se
    assert (row["ci_low"], row["ci_high"]) == (pytest.approx(18 - half), pytest.approx(18 + half))
    assert "counted once, as basic-s0" in row["sentence"]


# ----------------------------------------------------------- no spread ----

def test_seeds_without_spread_give_no_interval_over_seeds_and_the_paired_test_stands_in(tmp_path):
    """Two seeds a side, each side's seeds scoring alike (coarse accuracies on 16 test
    images): no interval over seeds, which would be a point; the paired bootstrap over the
    test images of both seeds instead, and McNemar, from the saved predictions."""
    runs = tmp_path / "runs"
    _run(runs / "basic-s0", _exp("basic", 0), 50.0, _right(8))
    _run(runs / "basic-s1", _exp("basic", 1), 50.0, np.roll(_right(8), 4))
    _run(runs / "da-s0", _exp("da", 0), 62.5, _right(10))
    _run(runs / "da-s1", _exp("da", 1), 62.5, np.roll(_right(10), 4))
    row = comparison_table(runs).iloc[0]
    assert row["diff"] == pytest.approx(12.5)
    assert row["interval"] == "seeds 0,1, bootstrap over test images"
    assert row["ci_low"] < row["ci_high"] and row["ci_low"] <= 12.5 <= row["ci_high"]
    # da is right on 2 more images in each seed and never wrong where basic is right
    assert (row["only_a_right"], row["only_b_right"], row["paired_seeds"]) == (0, 4, 2)
    assert "excludes 0" not in row["sentence"] and "95% CI +12.50 to +12.50" not in row["sentence"]
    assert "No spread between seeds: the 2 seeds of basic scored alike, and the 2 of da alike, so " in row["sentence"]
    assert "not evidence that the recipes differ" in row["sentence"]
    assert "the interval above is the paired one, over test images only" in row["sentence"]


def test_seeds_without_spread_and_without_predictions_give_no_interval_and_say_why(tmp_path):
    runs = tmp_path / "runs"
    for seed in (0, 1):
        _run(runs / f"basic-s{seed}", _exp("basic", seed), 50.0)
        _run(runs / f"da-s{seed}", _exp("da", seed), 62.5)
    row = comparison_table(runs).iloc[0]
    assert math.isnan(row["ci_low"]) and math.isnan(row["ci_high"]) and row["interval"] == ""
    assert "No spread between seeds" in row["sentence"] and "95% CI" not in row["sentence"]
    assert "Run more seeds, or test on more images, to measure the spread" in row["sentence"]
    assert all(math.isnan(v) for v in welch_interval([50.0, 50.0], [62.5, 62.5]))


# ---------------------------------------------------- Welch, not pooled ----

def test_welchs_interval_is_welchs_with_unequal_sizes_and_spreads():
    """Three seeds with little spread against six with much: Welch-Satterthwaite's
    degrees of freedom and standard error, written out; the pooled Student t interval on
    the same samples is far from it (checked, so the test can tell them apart)."""
    a = [90.0, 90.4, 90.8]                               # n 3, variance 0.16
    b = [86.0, 88.0, 91.0, 93.0, 95.0, 99.0]             # n 6
    na, nb = len(a), len(b)
    ma, mb = sum(a) / na, sum(b) / nb
    va = sum((v - ma) ** 2 for v in a) / (na - 1)
    vb = sum((v - mb) ** 2 for v in b) / (nb - 1)
    se = math.sqrt(va / na + vb / nb)
    df = (va / na + vb / nb) ** 2 / ((va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1))
    half = scipy_stats.t.ppf(0.975, df) * se
    lo, hi = welch_interval(a, b)
    assert (lo, hi) == (pytest.approx(mb - ma - half, abs=1e-9), pytest.approx(mb - ma + half, abs=1e-9))
    pooled_sd = math.sqrt(((na - 1) * va + (nb - 1) * vb) / (na + nb - 2))
    pooled_half = scipy_stats.t.ppf(0.975, na + nb - 2) * pooled_sd * math.sqrt(1 / na + 1 / nb)
    assert abs(pooled_half - half) > 0.5  # the two intervals differ by more than half a point
    assert welch_interval(b, a) == (pytest.approx(-hi), pytest.approx(-lo))


# ------------------------------------------- Table 1: whole configuration ----

@pytest.mark.parametrize("field,first,second", [
    ("test_size", 100, 200),
    ("width", 4, 8),
    ("train_size", 128, 256),
    ("val_size", None, 32),
    ("recipe", "report", "fast"),
], ids=["test_size", "width", "train_size", "val_size", "recipe"])
def test_table_1_never_averages_runs_that_differ_in_one_setting(tmp_path, field, first, second):
    """Two seeds of basic, alike but for one setting: two rows (40 and 60), never one
    row of 50 ± 14."""
    runs = tmp_path / "runs"
    for name, seed, value, best in (("one", 0, first, 40.0), ("two", 1, second, 60.0)):
        exp = get_experiment("basic", dataset="synthetic", epochs=2, seed=seed, **{field: value})
        _run(runs / name, exp, best, best_tta=best if exp.tta else None)  # the fast recipe: TTA
    table = results_table(load_runs(runs))
    assert len(table) == 2 and sorted(table["best_acc"]) == [40.0, 60.0]
    assert list(table["runs"]) == [1, 1] and 50.0 not in set(table["best_acc"])
    assert table["experiment"].nunique() == 2


# ----------------------------------------------- per class: plain predictions ----

def test_per_class_accuracy_is_the_plain_predictions_and_says_so(tmp_path):
    """A run with flip TTA whose TTA predictions differ from its plain ones, class by
    class: the per-class table is the plain predictions', counted here image by image."""
    runs = tmp_path / "runs"
    plain = LABELS.copy()
    plain[[0, 4, 8, 1]] = 3                                 # class 0: 1 of 4 right, class 1: 3 of 4
    tta = LABELS.copy()
    tta[[2, 6]] = 0                                         # class 2: 2 of 4 right
    exp = get_experiment("basic", recipe="fast", dataset="synthetic", epochs=2)
    assert exp.tta
    _run(runs / "fast", exp, 100 * float((plain == LABELS).mean()), plain, tta,
         best_tta=100 * float((tta == LABELS).mean()))
    expected = [100 * sum(p == t for p, t in zip(plain, LABELS) if t == c) / 4 for c in range(4)]
    by_tta = [100 * sum(p == t for p, t in zip(tta, LABELS) if t == c) / 4 for c in range(4)]
    assert expected == [25.0, 75.0, 100.0, 100.0] and by_tta != expected
    table = per_class_table(runs)
    assert list(table["fast"]) == pytest.approx(expected)
    assert list(table["test images"]) == [4, 4, 4, 4]
    write_report(runs, tmp_path / "out")
    md = (tmp_path / "out" / "per_class.md").read_text()
    assert "plain predictions, without flip TTA" in md
    assert "| class 0 | 4 | 25.0 |" in md and "| class 2 | 4 | 100.0 |" in md


def test_the_sentences_count_the_intervals_that_exclude_0_against_chance():
    """20 pairs with an interval over seeds (3 of them clear of 0, one touching 0 from
    above), one without, and 2 bootstrap intervals over one seed's test images (clear of
    0, not counted: they ask another question): the last line says 3 of 20, against the
    1.0 that chance alone gives at 5%."""
    import pandas as pd

    from colabkit.report.compare import comparison_sentences

    lows = [0.5, -9.0, 1.2] + [-1.0] * 16 + [0.0, float("nan"), 2.0, 3.0]
    highs = [4.0, -2.0, 3.0] + [2.0] * 16 + [1.0, float("nan"), 5.0, 6.0]
    how = ["over seeds, 3 and 3 runs"] * 21 + ["paired bootstrap over test images"] * 2
    table = pd.DataFrame({"ci_low": lows, "ci_high": highs, "interval": how,
                          "sentence": [f"pair {i}" for i in range(len(lows))]})
    lines = comparison_sentences(table).splitlines()
    assert lines[:-1] == [f"pair {i}" for i in range(len(lows))]
    assert lines[-1].startswith("20 pairs have a 95% interval over seeds, and 3 of them exclude 0. "
                                "Were no recipe different from another, about 1.0 would")
    assert comparison_sentences(table.iloc[:1]).splitlines() == ["pair 0"]  # one pair: no count
