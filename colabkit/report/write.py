"""The report, written from run folders alone (no GPU needed): Figures 11-13, Table 1,
the status of each run, the comparisons with p-values and per-class accuracy; on request
confusion matrices from each run's best checkpoint and a look inside every run
(``inspection``), which need the test data.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..data.archives import DataError
from ..data.sources import load_dataset
from ..experiments import Experiment
from ..rundir.checkpoint import read_checkpoint
from ..rundir.runs import RunDir, find_runs, read_json, read_predictions
from ..training.predict import predict, eval_loader, trained_network, trained_precision
from .compare import comparison_sentences, comparison_table, per_class_table
from .figures import FIGURES, plot_confusion, plot_curves
from .inspection import InspectionError, inspect_run, plot_robustness
from .plotting import save_figure
from .status import status_table
from .tables import ReportError, load_runs, results_table, table_markdown


def confusion_matrix(run_dir: str | os.PathLike, data=None, data_root: str | os.PathLike = "data",
                     device: str = "cpu", tta: bool = False) -> tuple[np.ndarray, list[str]]:
    """(confusion matrix [true, predicted], class names) of a run's best checkpoint on
    its test split: plain predictions, or with ``tta`` (a run with flip TTA) its TTA ones.
    From the best epoch's ``predictions.npz`` when the run saved it (no data, no model
    run); else (a run trained with DDP, or an older one) the checkpoint's network is run
    on the test split as training evaluated it (``training.predict``: the run's precision,
    normalization and TTA): ``data``, or the run's data set loaded from ``data_root``
    without download."""
    run = RunDir(run_dir)
    state = read_checkpoint(run.best)
    classes, k = list(state["classes"]), len(state["classes"])
    saved = read_predictions(run.predictions)
    which = "pred_tta" if tta else "pred"
    if saved is not None and saved["epoch"] == state["epoch"] and saved[which] is not None:
        cm = np.bincount(saved["label"].astype(np.int64) * k + saved[which], minlength=k * k)
        return cm.reshape(k, k), classes
    cfg = Experiment.from_dict(state["config"])
    if tta and not cfg.tta:
        raise ReportError(f"{run.path} was trained without flip TTA: ask for its plain confusion "
                          "matrix (tta=False)")
    if data is None:
        data = load_dataset(cfg.dataset, data_root, download=False, seed=cfg.seed)
    data = data.subset(None, cfg.test_size, cfg.seed)
    p = predict(trained_network(state, k, device), eval_loader(data, cfg.batch_size, device),
                trained_precision(state, read_json(run.environment, {}), device), tta)
    cm = np.bincount(p.label.astype(np.int64) * k + (p.pred_tta if tta else p.pred), minlength=k * k)
    return cm.reshape(k, k), classes


def per_class_accuracy(cm: np.ndarray, classes: list[str]) -> pd.Series:
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = 100.0 * np.diag(cm) / cm.sum(axis=1)
    return pd.Series(acc, index=classes, name="accuracy (%)")


def inspect_runs(runs_dir: str | os.PathLike, out: str | os.PathLike, *,
                 data_root: str | os.PathLike = "data", device: str = "cpu",
                 images: int | None = None) -> tuple[dict[str, list[Path]], Figure | None]:
    """``inspect_run`` for every run folder with a checkpoint, into
    ``out/inspect/<run>/``, and one robustness figure with all runs side by side (also
    ``robustness_all.png``/``.csv`` in ``out``). Runs whose data is not at hand are
    skipped with a line saying why."""
    out = Path(out).expanduser()
    written, tables = {}, {}
    for run in find_runs(runs_dir):
        if not run.has_checkpoint() and not run.best.exists():
            continue
        try:
            files = inspect_run(run.path, out / "inspect" / run.name, data_root=data_root,
                            device=device, images=images)
        except (DataError, InspectionError) as e:
            print(f"{run.name}: not inspected ({e})")
            continue
        written[f"inspect_{run.name}"] = [p for paths in files.values() for p in paths]
        tables[run.name] = pd.read_csv(out / "inspect" / run.name / "robustness.csv")
    if not tables:
        return written, None
    fig = plot_robustness(tables)
    pd.concat(tables.values()).to_csv(out / "robustness_all.csv", index=False)
    written["robustness_all"] = save_figure(fig, out, "robustness_all") + [out / "robustness_all.csv"]
    return written, fig


def write_report(runs_dir: str | os.PathLike, out: str | os.PathLike, *, confusion: bool = False,
                 inspect: bool = False, data_root: str | os.PathLike = "data",
                 device: str = "cpu", allow_empty: bool = False) -> dict[str, list[Path]]:
    """Figures 11-13 (PNG and PDF), Table 1 (Markdown and CSV) and the joined logs into
    ``out``; with ``confusion=True`` also per-class accuracy and confusion matrices from
    each run's best checkpoint (runs whose test data is not at hand are skipped); with
    ``inspect=True`` also ``inspect_runs`` (attention maps, robustness, cost, mistakes).
    With no run that finished an epoch this raises ``ReportError``, or with ``allow_empty``
    (a notebook run before any training) writes a ``table1.md`` that says so."""
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise ReportError(f"--out {out} is a file: give a folder for the figures and tables")
    runs = load_runs(runs_dir, allow_empty=allow_empty)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[Path]] = {}
    if runs.empty:
        (out / "table1.md").write_text(f"No run in {runs_dir} has finished an epoch yet: train "
                                       "one, then report again.\n", encoding="utf-8")
        return {"table": [out / "table1.md"]}
    for metric, (stem, _, _) in FIGURES.items():
        written[metric] = save_figure(plot_curves(runs, metric), out, stem)
    table = results_table(runs)
    (out / "table1.md").write_text(table_markdown(table), encoding="utf-8")
    table.to_csv(out / "table1.csv", index=False)
    results_table(runs, by="run").to_csv(out / "runs.csv", index=False)
    status_table(runs_dir).to_csv(out / "status.csv", index=False)
    written["table"] = [out / "table1.md", out / "table1.csv", out / "runs.csv", out / "status.csv"]
    comparison = comparison_table(runs_dir, runs)
    comparison.to_csv(out / "comparison.csv", index=False)
    (out / "comparison.md").write_text(
        "# Comparisons\n\n" + "\n".join(f"- {t}" for t in comparison_sentences(comparison).splitlines())
        + "\n", encoding="utf-8")
    written["comparison"] = [out / "comparison.csv", out / "comparison.md"]
    per_class = per_class_table(runs_dir)
    if len(per_class):
        per_class.to_csv(out / "per_class.csv", float_format="%.2f")
        note = ""
        if {"fish", "flowers"} <= set(per_class.index):
            note = ("\nfish and flowers (CIFAR-100's superclasses) have half the test images of "
                    "the CIFAR-10 classes (500 each in the full test set): their accuracies are "
                    "less certain, and they had half the training images too.\n")
        head = ["class", *per_class.columns]
        body = [f"| {name} | {int(row.iloc[0])} | " + " | ".join(f"{v:.1f}" for v in row.iloc[1:]) + " |"
                for name, row in per_class.iterrows()]
        (out / "per_class.md").write_text(
            "# Test accuracy per class at the best epoch (%)\n\nFrom each run's plain "
            "predictions, without flip TTA, so that every column measures alike (Table 1 "
            "gives a run with flip TTA its TTA accuracy).\n\n| " + " | ".join(head) + " |\n|"
            + "---|" * len(head) + "\n" + "\n".join(body) + "\n" + note, encoding="utf-8")
        written["per_class"] = [out / "per_class.csv", out / "per_class.md"]
    if confusion:
        for run_dir in find_runs(runs_dir):
            run = run_dir.name
            if run not in set(runs["run"]) or not run_dir.best.exists():
                continue
            try:
                cm, classes = confusion_matrix(run_dir.path, data_root=data_root, device=device)
            except (DataError, FileNotFoundError) as e:
                print(f"{run}: no confusion matrix ({e})")
                continue
            per_class_accuracy(cm, classes).to_csv(out / f"per_class_{run}.csv")
            written[f"confusion_{run}"] = save_figure(plot_confusion(cm, classes, run), out,
                                                      f"confusion_{run}") + [out / f"per_class_{run}.csv"]
    if inspect:
        written.update(inspect_runs(runs_dir, out, data_root=data_root, device=device)[0])
    return written


