"""The report's question answered honestly: for each pair of experiments, the difference
of best test accuracy with a 95% interval (over seeds, or a paired bootstrap over test
images) and an exact McNemar p-value on the same test images, as a sentence to quote;
and test accuracy per class at each run's best epoch. From run folders alone."""
from __future__ import annotations

import math
import os
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.sources import CIFAR10_CLASSES, CIFAR12_CLASSES
from ..experiments import ABLATIONS, PRESETS, RECIPES, REPORT_MODELS, run_name
from ..rundir.runs import find_runs, read_json, read_predictions
from . import stats
from .tables import load_runs, results_table


def _correct(run_dir: Path) -> dict | None:
    """{"plain": (right or wrong per test image, labels), "flip TTA": the same or None}."""
    p = read_predictions(Path(run_dir) / "predictions.npz")
    if p is None:
        return None
    tta = None if p["pred_tta"] is None else (p["pred_tta"] == p["label"], p["label"])
    return {"plain": (p["pred"] == p["label"], p["label"]), "flip TTA": tta}


def _one_per_seed(rows: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """An experiment's runs, one per seed (the first by name), and a note naming the seeds
    run more than once. A seed run twice is one sample, not two: Table 1 does not average
    such runs, and a comparison counts the seed once."""
    rows = rows.sort_values("run")
    twice = rows[rows["seed"].duplicated(keep=False)]
    if twice.empty:
        return rows, ""
    kept = rows.drop_duplicates("seed", keep="first")
    parts = [f"seed {seed} of {rows['experiment'].iloc[0]} run more than once "
             f"({', '.join(g['run'])}): counted once, as {g['run'].iloc[0]}"
             for seed, g in twice.groupby("seed", sort=True)]
    return kept, "; ".join(parts)


def comparison_table(runs_dir: str | os.PathLike, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """For each pair of experiments: the difference of mean best test accuracy (B - A, in
    points) with a 95% interval - over seeds (Welch) when both have two or more seeds whose
    accuracies spread, else a paired bootstrap over the test images of the seeds both ran -
    and an exact McNemar p-value on the best epochs' predictions of the same test images,
    pooled over the seeds both ran; with a sentence a reader can quote. A seed run more
    than once counts once (its first run by name), as Table 1 does not average such runs.
    The report's sequence and the ablations come first (for each recipe). Both sides are
    measured the same way (``accuracy``): with flip TTA when both experiments use it, else
    plain, never one of each."""
    runs = load_runs(runs_dir) if runs is None else runs
    per_run = results_table(runs, by="run")
    folders = {r.name: r.path for r in find_runs(runs_dir)}
    predictions = {}  # each run's file read once, not once per pair

    def correct(run):
        if run not in predictions:
            predictions[run] = _correct(folders[run])
        return predictions[run]

    exps = list(dict.fromkeys(per_run["experiment"]))
    first = [(run_name(a, r), run_name(b, r)) for r in RECIPES for a, b in
             [*zip(REPORT_MODELS, REPORT_MODELS[1:]), *[(ref, e) for e, (ref, _) in ABLATIONS.items()]]]
    first += [(e, run_name(e, r)) for e in PRESETS for r in RECIPES if r != "report"]  # recipe vs recipe
    pairs = [p for p in first if p[0] in exps and p[1] in exps]
    pairs += [p for p in combinations(exps, 2) if p not in pairs and p[::-1] not in pairs]
    rows = []
    for a, b in pairs:
        ra, note_a = _one_per_seed(per_run[per_run["experiment"] == a])
        rb, note_b = _one_per_seed(per_run[per_run["experiment"] == b])
        note = "; ".join(n for n in (note_a, note_b) if n)
        tta = (ra["accuracy"] == "flip TTA").all() and (rb["accuracy"] == "flip TTA").all()
        kind = "flip TTA" if tta else "plain"
        col = "best_acc" if tta or ((ra["accuracy"] == "plain").all() and (rb["accuracy"] == "plain").all()) \
            else "best_acc_plain"
        diff = rb[col].mean() - ra[col].mean()
        lo = hi = float("nan")
        how = no_spread = ""
        if len(ra) >= 2 and len(rb) >= 2:
            lo, hi = stats.welch_interval(list(ra[col]), list(rb[col]))
            if math.isnan(lo):  # no spread on either side: no interval over seeds
                no_spread = f"the {len(ra)} seeds of {a} scored alike, and the {len(rb)} of {b} alike"
            else:
                how = f"over seeds, {len(ra)} and {len(rb)} runs"
        only_a = only_b = images = matched = 0
        paired = []  # (right for A, right for B, seed) of each seed both ran
        for seed in sorted(set(ra["seed"]) & set(rb["seed"])):
            ca = correct(ra[ra["seed"] == seed]["run"].iloc[0])
            cb = correct(rb[rb["seed"] == seed]["run"].iloc[0])
            ca, cb = ca and ca[kind], cb and cb[kind]
            if ca is None or cb is None or not np.array_equal(ca[1], cb[1]):
                continue  # no predictions saved, or not the same test images
            x, y = stats.discordant(ca[0], cb[0])
            only_a, only_b, images, matched = only_a + x, only_b + y, len(ca[0]), matched + 1
            paired.append((ca[0], cb[0], seed))
        if not how and paired:  # one seed on a side, or no spread: the matched pairs, paired
            right_a = np.concatenate([p[0] for p in paired])
            right_b = np.concatenate([p[1] for p in paired])
            diff = 100 * (right_b.mean() - right_a.mean())
            lo, hi = stats.paired_bootstrap(right_a, right_b)
            seeds = ",".join(str(p[2]) for p in paired)
            how = f"seed{'s' if len(paired) > 1 else ''} {seeds}, bootstrap over test images"
        p = stats.mcnemar(only_a, only_b) if matched else float("nan")
        rows.append({"a": a, "b": b, "accuracy": kind, "diff": diff, "ci_low": lo, "ci_high": hi,
                     "interval": how, "mcnemar_p": p, "only_a_right": only_a,
                     "only_b_right": only_b, "paired_images": images, "paired_seeds": matched,
                     "note": note,
                     "sentence": _sentence(a, b, diff, lo, hi, how, p, only_a, only_b, images,
                                           matched, kind, no_spread=no_spread, note=note)})
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


COMPARISON_COLUMNS = ("a", "b", "accuracy", "diff", "ci_low", "ci_high", "interval", "mcnemar_p",
                      "only_a_right", "only_b_right", "paired_images", "paired_seeds", "note",
                      "sentence")


def comparison_sentences(comparison: pd.DataFrame) -> str:
    """The comparisons as lines to quote, or what is missing for one. With several pairs,
    a last line counts the intervals over seeds that exclude 0 against what chance alone
    gives."""
    if comparison.empty:
        return ("No comparison yet: comparisons need runs of two experiments (or of two "
                "configurations of one), and these runs are of one or none.")
    lines = list(comparison["sentence"])
    # intervals over seeds only: a bootstrap over one seed's test images asks whether these
    # two trained models differ, and excludes 0 far more often when the recipes do not
    seeds = comparison["interval"].astype(str).str.startswith("over seeds")
    intervals = comparison[seeds & comparison["ci_low"].notna() & comparison["ci_high"].notna()]
    if len(intervals) > 1:
        out = int(((intervals["ci_low"] > 0) | (intervals["ci_high"] < 0)).sum())
        lines.append(f"{len(intervals)} pairs have a 95% interval over seeds, and {out} of them "
                     "exclude 0. "
                     f"Were no recipe different from another, about {0.05 * len(intervals):.1f} "
                     "would exclude 0 by chance alone: no correction for the number of "
                     "comparisons is made, so read a narrow exclusion as weak evidence.")
    return "\n".join(lines)


def _sentence(a, b, diff, lo, hi, how, p, x, y, images, seeds, accuracy="plain", *,
              no_spread: str = "", note: str = "") -> str:
    """Two questions, kept apart. Does B's recipe beat A's? Only the spread over seeds
    answers that. Do these trained models disagree beyond chance on these test images?
    McNemar answers that, and says nothing about seed-to-seed variation (with several
    seeds it can be tiny while the interval over seeds still includes 0). ``no_spread``
    says that every seed of each side scored alike ("the 3 seeds of a scored alike, and the
    3 of b alike"): an interval from no spread would be a point, and no evidence."""
    measure = "test accuracy" if accuracy == "plain" else "test accuracy with flip TTA"
    text = f"{b} vs {a}: {diff:+.2f} points of {measure}"
    if how.startswith("over seeds"):
        text += f" (95% CI {lo:+.2f} to {hi:+.2f}, {how})"
        verdict = ("the interval over seeds excludes 0: the recipes differ" if lo > 0 or hi < 0
                   else "the interval over seeds includes 0: these seeds do not show that one "
                        "recipe beats the other")
    elif how:
        text += f" (95% CI {lo:+.2f} to {hi:+.2f}, {how})"
        verdict = "one seed: the spread between seeds is not measured; run more seeds"
    else:
        verdict = "run two or more seeds of each for an interval"
    if no_spread:
        verdict = (f"no spread between seeds: {no_spread}, so there is no interval over seeds "
                   "(one from no spread would be a point, not evidence that the recipes differ)"
                   + ("; the interval above is the paired one, over test images only" if how else "")
                   + ". Run more seeds, or test on more images, to measure the spread")
    if seeds:
        text += (f"; McNemar p = {p:.3g} on {images:,} paired test images x {seeds} seed(s) "
                 f"({x} right only for {a}, {y} only for {b}): the trained models "
                 f"{'disagree' if p < 0.05 else 'do not disagree'} beyond chance at the 5% level")
    else:
        text += "; no paired predictions (predictions.npz) for a McNemar test"
    text = f"{text}. {verdict[0].upper()}{verdict[1:]}."
    return f"{text} Note: {note}." if note else text


def per_class_table(runs_dir: str | os.PathLike, classes=None) -> pd.DataFrame:
    """Test accuracy (%) per class at each run's best epoch (from predictions.npz; runs
    without it are left out), one column per run, with the number of test images; plain
    accuracy (without flip TTA) for every run, so the columns measure alike."""
    cols, counts = {}, None
    for run in find_runs(runs_dir):
        c = _correct(run.path)
        if c is None:
            continue
        correct, labels = c["plain"]  # every run has it: one measure for all columns
        k = int(labels.max()) + 1
        hits = np.bincount(labels, weights=correct, minlength=k)
        counts = np.bincount(labels, minlength=k)
        cols[run.name] = 100 * hits / np.maximum(counts, 1)
        if classes is None:
            ds = read_json(run.config, {}).get("dataset")
            classes = {"cifar12": CIFAR12_CLASSES, "cifar10": CIFAR10_CLASSES}.get(ds)
    if not cols:
        return pd.DataFrame()
    k = max(len(v) for v in cols.values())
    names = list(classes)[:k] if classes and len(classes) >= k else [f"class {i}" for i in range(k)]
    table = pd.DataFrame({n: v for n, v in cols.items()}, index=names)
    table.insert(0, "test images", counts[:k])
    table.index.name = "class"
    return table
