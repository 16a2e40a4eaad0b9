"""Table 1 from run folders alone: every run's metrics.csv joined with its config.json,
the best test accuracy and its epoch per run and per experiment (mean ± sd over seeds),
and the report's numbers beside the rows trained in the report's setting."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.augment import AugmentSpec
from ..experiments import REPORTED_BEST, Experiment, run_name
from ..rundir.runs import METRIC_FIELDS, find_runs, read_json, read_metrics, selection_key


class ReportError(ValueError):
    """Nothing to report; the message says what was expected."""


META_COLUMNS = ("run", "experiment", "model", "dataset", "seed", "augment", "epochs_planned",
                "width", "train_images", "val_images", "recipe", "tta", "lr_schedule", "base",
                "setting", "schedule_changed", "machine", "data")


def load_runs(runs_dir: str | os.PathLike, allow_empty: bool = False) -> pd.DataFrame:
    """Every run's metrics.csv joined with its config.json, one row per logged epoch:
    run, experiment, model, dataset, seed, augment, epoch, lr, losses, accuracies, ...
    Without a run that finished an epoch this raises ``ReportError`` saying what to do,
    or with ``allow_empty`` (a notebook that runs before any training) returns no rows."""
    if allow_empty and not find_runs_with_epochs(runs_dir):
        return pd.DataFrame(columns=[*META_COLUMNS, *METRIC_FIELDS])
    if not Path(runs_dir).expanduser().exists():
        raise ReportError(f"{Path(runs_dir).expanduser()} does not exist: give the folder that "
                          "holds the run folders (e.g. runs), or one run folder")
    runs = find_runs(runs_dir)
    frames = []
    for run in runs:
        cfg = Experiment.from_dict(read_json(run.config))
        rows = read_metrics(run.metrics)
        if not rows:
            continue  # started, no epoch finished yet
        env = read_json(run.environment, {})
        df = pd.DataFrame(rows)
        for col in ("val_loss", "val_acc", "test_acc_tta", "val_acc_tta"):  # older logs, no TTA
            if col not in df:
                df[col] = np.nan
        df = df.astype({c: float for c in ("val_loss", "val_acc", "test_acc_tta", "val_acc_tta")})
        # an experiment of another recipe is another experiment: basic and basic-fast
        base = run_name(cfg.name, cfg.recipe)
        setting = {k: v for k, v in cfg.to_dict().items() if k != "seed"}
        setting.update(train_images=env.get("train_images", cfg.train_size),
                       val_images=env.get("val_images", cfg.val_size),
                       schedule_changed=bool(env.get("schedule_changes"))
                       or cfg.off_schedule(rows) is not None)
        meta = {"run": run.name, "experiment": base, "model": cfg.model,
                "dataset": cfg.dataset, "seed": cfg.seed, "augment": cfg.augment.describe(),
                "epochs_planned": cfg.epochs, "width": cfg.width,
                "train_images": setting["train_images"], "val_images": setting["val_images"],
                "recipe": cfg.recipe, "tta": cfg.tta, "lr_schedule": cfg.lr_schedule,
                "base": base, "setting": json.dumps(setting, sort_keys=True),
                "schedule_changed": setting["schedule_changed"],
                # the GPU it ran on, and the data set in words where environment.json says
                # (bench/gpu_check.sh adds it): Table 1 names both beside the run
                "machine": env.get("gpu"), "data": env.get("data")}
        for i, (k, v) in enumerate(meta.items()):
            df.insert(i, k, v)
        frames.append(df)
    if not frames:
        what = "no run folders (each holds config.json)" if not runs else \
            "run folders, but none has a finished epoch in metrics.csv yet"
        raise ReportError(f"{Path(runs_dir).expanduser()} holds {what}. Train a run first, "
                          "e.g. `python -m colabkit train --experiment basic --run-dir "
                          "runs/basic`, then report on the folder holding the runs.")
    df = pd.concat(frames, ignore_index=True)
    df["experiment"] = df["base"] + df["setting"].map(_setting_labels(df))
    return df


def find_runs_with_epochs(runs_dir: str | os.PathLike) -> list:
    """The run folders under ``runs_dir`` that have logged a finished epoch."""
    return [r for r in find_runs(runs_dir) if read_metrics(r.metrics)]


def _setting_labels(runs: pd.DataFrame) -> dict[str, str]:
    """Each configuration's label after its experiment's name: empty where the experiment
    was run in one configuration only, else the fields that tell its configurations
    apart, ``" [epochs=30]"``, so that Table 1 never averages unlike runs."""
    labels = {}
    for _, group in runs.groupby("base", sort=False):
        settings = {s: json.loads(s) for s in dict.fromkeys(group["setting"])}
        if len(settings) == 1:
            labels.update(dict.fromkeys(settings, ""))
            continue
        keys = [k for k in next(iter(settings.values()))
                if len({json.dumps(d.get(k), sort_keys=True) for d in settings.values()}) > 1]
        for text, d in settings.items():
            parts = ["schedule changed" if k == "schedule_changed" and d[k] else
                     f"augment={AugmentSpec.from_dict(d[k]).describe()}" if k == "augment" else
                     f"{k}={d[k]}" for k in keys if not (k == "schedule_changed" and not d[k])]
            labels[text] = f" [{', '.join(parts)}]" if parts else ""
    return labels


def _fmt(mean: float, sd: float, n: int, digits: int = 3) -> str:
    if n > 1 and not math.isnan(sd):
        return f"{mean:.{digits}f} ± {sd:.{digits}f}"
    return f"{mean:.{digits}f}"


def results_table(runs: pd.DataFrame, by: str = "experiment") -> pd.DataFrame:
    """Table 1: per experiment (or per run with ``by="run"``) the model, recipe, data set,
    training images, width, augmentation, best test accuracy (%) and its epoch, final
    accuracy, epochs and training hours; with several runs (seeds) of one experiment, mean
    and sd.

    The best epoch is chosen on the validation split when the run has one (its test
    accuracy is then an honest estimate), else on the test set as the report did. A run
    with flip test-time augmentation is chosen and reported by its TTA accuracy
    (``accuracy``: ``flip TTA``, else ``plain``); ``best_acc_plain`` is its plain test
    accuracy at that epoch, for comparisons with runs without TTA."""
    if by not in ("experiment", "run"):
        raise ValueError("by must be 'experiment' or 'run'")
    if runs.empty:
        return pd.DataFrame(columns=RUN_COLUMNS if by == "run" else TABLE_COLUMNS)
    per_run = []
    for run, df in runs.groupby("run", sort=True):
        df = df.sort_values("epoch")
        tta = bool(df["tta"].iloc[0]) if "tta" in df else False
        key = selection_key(df["val_acc"], tta)
        best = df.loc[df[key.column].idxmax()]  # first epoch reaching the maximum
        per_run.append({
            "run": run, "experiment": df["experiment"].iloc[0], "model": df["model"].iloc[0],
            "recipe": df["recipe"].iloc[0] if "recipe" in df else "report",
            "accuracy": "flip TTA" if tta else "plain",
            "dataset": df["dataset"].iloc[0], "train_images": df["train_images"].iloc[0],
            "width": int(df["width"].iloc[0]), "seed": int(df["seed"].iloc[0]),
            "augmentation": df["augment"].iloc[0], "selected_on": key.split,
            "best_acc": float(best[key.accuracy("test")]),
            "best_val_acc": float(best[key.accuracy("val")]),
            "best_acc_plain": float(best["test_acc"]),
            "best_epoch": int(best["epoch"]), "final_acc": float(df[key.accuracy("test")].iloc[-1]),
            "epochs_done": int(df["epoch"].nunique()),
            "epochs_planned": int(df["epochs_planned"].iloc[0]),
            "hours": float(df["seconds"].sum()) / 3600,
            "base": df["base"].iloc[0], "schedule_changed": bool(df["schedule_changed"].iloc[0]),
            "machine": df["machine"].iloc[0] if "machine" in df else None,
            "data": df["data"].iloc[0] if "data" in df else None,
        })
    table = pd.DataFrame(per_run, columns=RUN_COLUMNS)
    if by == "run":
        return table
    rows = []
    for exp, g in table.groupby("experiment", sort=False):
        twice = sorted(set(g["seed"][g["seed"].duplicated()]))
        if twice:  # one seed run twice is not two samples: each run stands alone, flagged
            note = f"seed {','.join(map(str, twice))} run more than once: runs not averaged"
            rows += [_group_row(exp, g.iloc[[i]], note) for i in range(len(g))]
        else:
            rows.append(_group_row(exp, g, ""))
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


RUN_COLUMNS = ("run", "experiment", "model", "recipe", "accuracy", "dataset", "train_images",
               "width", "seed", "augmentation", "selected_on", "best_acc", "best_val_acc",
               "best_acc_plain", "best_epoch", "final_acc", "epochs_done", "epochs_planned",
               "hours", "base", "schedule_changed", "machine", "data")
TABLE_COLUMNS = ("experiment", "model", "recipe", "dataset", "train_images", "width",
                 "augmentation", "selected_on", "accuracy", "runs", "seeds", "best_acc",
                 "best_acc_sd", "best_epoch", "final_acc", "final_acc_sd", "epochs_done",
                 "epochs_planned", "hours", "report_best_acc", "report_best_epoch",
                 "schedule_changed", "run", "note", "machine", "data")


def _group_row(exp: str, g: pd.DataFrame, note: str) -> dict:
    """One row of Table 1: runs of one configuration, mean and sd over their seeds."""
    first = g.iloc[0]
    reported = REPORTED_BEST.get(first["base"], (float("nan"), float("nan")))
    return {
        "experiment": exp, "model": first["model"], "recipe": first["recipe"],
        "dataset": first["dataset"],
        "train_images": first["train_images"], "width": first["width"],
        "augmentation": first["augmentation"], "selected_on": first["selected_on"],
        "accuracy": first["accuracy"],
        "runs": len(g), "seeds": ",".join(str(v) for v in sorted(g["seed"])),
        "best_acc": g["best_acc"].mean(), "best_acc_sd": g["best_acc"].std(),
        "best_epoch": g["best_epoch"].mean() if len(g) > 1 else int(g["best_epoch"].iloc[0]),
        "final_acc": g["final_acc"].mean(), "final_acc_sd": g["final_acc"].std(),
        "epochs_done": int(g["epochs_done"].min()), "epochs_planned": int(g["epochs_planned"].max()),
        "hours": g["hours"].sum(), "report_best_acc": reported[0], "report_best_epoch": reported[1],
        "schedule_changed": bool(g["schedule_changed"].any()),
        "run": first["run"] if note else "", "note": note,
        "machine": first.get("machine"), "data": first.get("data"),
    }


def comparable_to_report(row) -> bool:
    """The report's setting: its recipe, CIFAR-12 in full, ResNet18's width, 300 epochs done."""
    return (getattr(row, "recipe", "report") == "report" and row.dataset == "cifar12"
            and row.width == 64 and row.epochs_done >= 300 and row.epochs_planned == 300
            and not getattr(row, "schedule_changed", False)
            and (row.train_images is None or pd.isna(row.train_images) or row.train_images >= 55_000))


def _known(value) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def elsewhere(row) -> str:
    """For a row whose environment.json names its data set in words or a GPU, and whose data
    set is not CIFAR-12: what it is, ``"CIFAR-10 on NVIDIA H200, not comparable with the
    report's CIFAR-12"``; else empty."""
    data, machine = _known(getattr(row, "data", None)), _known(getattr(row, "machine", None))
    if row.dataset == "cifar12" or not (data or machine):
        return ""
    return f"{data or row.dataset}{' on ' + machine if machine else ''}, not comparable with the report's CIFAR-12"


def table_markdown(table: pd.DataFrame) -> str:
    """Table 1 as Markdown (mean ± sd where there are several runs). The report's number
    stands beside a row only when the row's setting is the report's; other rows say why
    they cannot be compared."""
    head = ["model", "recipe", "data set", "train images", "width", "epochs", "seeds",
            "augmentation", "accuracy", "best test acc. (%)", "best epoch (chosen on)",
            "final acc. (%)", "hours", "report: best (epoch)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table.itertuples():
        n = getattr(r, "runs", 1)
        if elsewhere(r):
            rep = elsewhere(r)
        elif math.isnan(getattr(r, "report_best_acc", float("nan"))):
            rep = ""
        elif comparable_to_report(r):
            rep = f"{r.report_best_acc:.3f} ({int(r.report_best_epoch)})"
        elif getattr(r, "schedule_changed", False):
            rep = "not comparable (its learning-rate schedule changed mid-run)"
        else:
            rep = "not comparable (other data, width, epochs or recipe)"
        if getattr(r, "note", ""):
            rep = f"{rep}; {r.run}: {r.note}" if rep else f"{r.run}: {r.note}"
        images = "all" if r.train_images is None or pd.isna(r.train_images) else f"{int(r.train_images):,}"
        best_epoch = f"{r.best_epoch:.0f}" if n == 1 else f"{r.best_epoch:.1f} (mean)"
        lines.append("| " + " | ".join([
            f"{r.experiment}: {r.model}", getattr(r, "recipe", "report"), r.dataset, images,
            str(r.width), f"{r.epochs_done}/{r.epochs_planned}", getattr(r, "seeds", "") or "1",
            r.augmentation, getattr(r, "accuracy", "plain"),
            _fmt(r.best_acc, getattr(r, "best_acc_sd", float("nan")), n),
            f"{best_epoch} ({r.selected_on})",
            _fmt(r.final_acc, getattr(r, "final_acc_sd", float("nan")), n),
            f"{r.hours:.2f}", rep]) + " |")
    return "\n".join(lines) + "\n"
