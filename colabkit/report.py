"""The report's figures and Table 1, from run folders alone (no GPU needed).

Figures 11-13 of the report: train accuracy, test accuracy and training loss per epoch,
one line per run. Table 1: augmentation, best test accuracy and its epoch per model.
Beyond the report: final accuracy, time, mean ± sd over seeds, per-class accuracy and a
confusion matrix from a run's best checkpoint.
"""
from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .experiments import Experiment, REPORTED_BEST
from .runs import find_runs, read_json, read_metrics

FIGURES = {  # metric -> (file stem, title, y label); numbered as in the report
    "train_acc": ("fig11_train_acc", "Figure 11: training accuracy", "accuracy (%)"),
    "test_acc": ("fig12_test_acc", "Figure 12: test accuracy", "accuracy (%)"),
    "train_loss": ("fig13_train_loss", "Figure 13: training loss", "cross-entropy"),
}


class ReportError(ValueError):
    """Nothing to report; the message says what was expected."""


def load_runs(runs_dir: str | os.PathLike) -> pd.DataFrame:
    """Every run's metrics.csv joined with its config.json, one row per logged epoch:
    run, experiment, model, dataset, seed, augment, epoch, lr, losses, accuracies, ..."""
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
        df = pd.DataFrame(rows)
        df.insert(0, "run", run.name)
        df.insert(1, "experiment", cfg.name)
        df.insert(2, "model", cfg.model)
        df.insert(3, "dataset", cfg.dataset)
        df.insert(4, "seed", cfg.seed)
        df.insert(5, "augment", cfg.augment.describe())
        df.insert(6, "epochs_planned", cfg.epochs)
        frames.append(df)
    if not frames:
        what = "no run folders (each holds config.json)" if not runs else \
            "run folders, but none has a finished epoch in metrics.csv yet"
        raise ReportError(f"{Path(runs_dir).expanduser()} holds {what}. Train a run first, "
                          "e.g. `python -m colabkit train --experiment basic --run-dir "
                          "runs/basic`, then report on the folder holding the runs.")
    return pd.concat(frames, ignore_index=True)


def _gapped(df: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """x, y over every epoch from the first to the last logged; NaN where an epoch is
    missing, so the line shows a gap there instead of joining across it."""
    s = df.set_index("epoch")[metric].sort_index()
    s = s[~s.index.duplicated(keep="last")]
    full = s.reindex(range(int(s.index.min()), int(s.index.max()) + 1))
    return full.index.to_numpy(), full.to_numpy(dtype=float)


def plot_curves(runs: pd.DataFrame, metric: str = "test_acc", ax=None, title: str | None = None):
    """One line per run of ``metric`` against epoch; learning-rate steps marked by dashed
    vertical lines. Returns the matplotlib Figure."""
    if metric not in runs.columns:
        raise ValueError(f"unknown metric {metric!r}; known: {list(FIGURES)}")
    if ax is None:
        fig = Figure(figsize=(7, 4.2), layout="constrained")
        ax = fig.add_subplot()
    fig = ax.figure
    steps = set()
    for run, df in runs.groupby("run", sort=True):
        x, y = _gapped(df, metric)
        ax.plot(x, y, label=run, linewidth=1.2)
        lr = df.sort_values("epoch")[["epoch", "lr"]].to_numpy()
        steps |= {int(e) for (e, a), (_, b) in zip(lr[1:], lr[:-1]) if a != b}
    for e in sorted(steps):
        ax.axvline(e - 0.5, color="0.6", linestyle="--", linewidth=0.8, zorder=0)
    stem, default_title, ylabel = FIGURES.get(metric, (metric, metric, metric))
    ax.set(xlabel="epoch", ylabel=ylabel, title=title or default_title)
    if steps and "lr step" not in [line.get_label() for line in ax.get_lines()]:
        ax.plot([], [], color="0.6", linestyle="--", linewidth=0.8, label="lr step")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _fmt(mean: float, sd: float, n: int, digits: int = 3) -> str:
    if n > 1 and not math.isnan(sd):
        return f"{mean:.{digits}f} ± {sd:.{digits}f}"
    return f"{mean:.{digits}f}"


def results_table(runs: pd.DataFrame, by: str = "experiment") -> pd.DataFrame:
    """Table 1: per experiment (or per run with ``by="run"``) the model, augmentation
    procedures, best test accuracy (%), its epoch, final accuracy, epochs done and
    training hours; with several runs (seeds) of one experiment, mean and sd."""
    if by not in ("experiment", "run"):
        raise ValueError("by must be 'experiment' or 'run'")
    per_run = []
    for run, df in runs.groupby("run", sort=True):
        df = df.sort_values("epoch")
        best = df.loc[df["test_acc"].idxmax()]  # first epoch reaching the maximum
        per_run.append({
            "run": run, "experiment": df["experiment"].iloc[0], "model": df["model"].iloc[0],
            "augmentation": df["augment"].iloc[0], "best_acc": float(best["test_acc"]),
            "best_epoch": int(best["epoch"]), "final_acc": float(df["test_acc"].iloc[-1]),
            "epochs_done": int(df["epoch"].nunique()),
            "epochs_planned": int(df["epochs_planned"].iloc[0]),
            "hours": float(df["seconds"].sum()) / 3600,
        })
    table = pd.DataFrame(per_run)
    if by == "run":
        return table
    rows = []
    for exp, g in table.groupby("experiment", sort=False):
        reported = REPORTED_BEST.get(exp, (float("nan"), float("nan")))
        rows.append({
            "experiment": exp, "model": g["model"].iloc[0], "augmentation": g["augmentation"].iloc[0],
            "runs": len(g), "best_acc": g["best_acc"].mean(), "best_acc_sd": g["best_acc"].std(),
            "best_epoch": g["best_epoch"].mean() if len(g) > 1 else int(g["best_epoch"].iloc[0]),
            "final_acc": g["final_acc"].mean(), "final_acc_sd": g["final_acc"].std(),
            "epochs_done": int(g["epochs_done"].min()), "epochs_planned": int(g["epochs_planned"].max()),
            "hours": g["hours"].sum(), "report_best_acc": reported[0], "report_best_epoch": reported[1],
        })
    return pd.DataFrame(rows)


def table_markdown(table: pd.DataFrame) -> str:
    """Table 1 as Markdown (mean ± sd where there are several runs)."""
    head = ["model", "augmentation", "runs", "best test acc. (%)", "best epoch",
            "final acc. (%)", "epochs", "hours", "report: best (epoch)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table.itertuples():
        n = getattr(r, "runs", 1)
        rep = "" if math.isnan(getattr(r, "report_best_acc", float("nan"))) else \
            f"{r.report_best_acc:.3f} ({int(r.report_best_epoch)})"
        best_epoch = f"{r.best_epoch:.0f}" if n == 1 else f"{r.best_epoch:.1f} (mean)"
        lines.append("| " + " | ".join([
            f"{r.experiment}: {r.model}", r.augmentation, str(n),
            _fmt(r.best_acc, getattr(r, "best_acc_sd", float("nan")), n), best_epoch,
            _fmt(r.final_acc, getattr(r, "final_acc_sd", float("nan")), n),
            f"{r.epochs_done}/{r.epochs_planned}", f"{r.hours:.2f}", rep]) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------- per-class, confusion ----

def confusion_matrix(run_dir: str | os.PathLike, data=None, data_root: str | os.PathLike = "data",
                     device: str = "cpu", batch_size: int = 500) -> tuple[np.ndarray, list[str]]:
    """(confusion matrix [true, predicted], class names) of a run's best checkpoint on
    its test split. ``data`` defaults to the run's data set, loaded without download."""
    import torch

    from .checkpoint import read_checkpoint
    from .data import DeviceLoader, load_dataset
    from .models import build_model
    from .runs import RunDir

    run = RunDir(run_dir)
    state = read_checkpoint(run.best)
    cfg = Experiment.from_dict(state["config"])
    if data is None:
        data = load_dataset(cfg.dataset, data_root, download=False, seed=cfg.seed)
    data = data.subset(None, cfg.test_size, cfg.seed)
    model = build_model(cfg.model, data.num_classes, width=cfg.width,
                        attention_kwargs={"kernel_size": cfg.spatial_kernel})
    model.load_state_dict(state["model"])
    model.to(device).eval()
    loader = DeviceLoader(data.x_test, data.y_test, batch_size, device=device,
                          mean=data.mean, std=data.std)
    k = data.num_classes
    cm = torch.zeros(k * k, dtype=torch.long, device=device)
    with torch.no_grad():
        for x, y in loader:
            cm += torch.bincount(y * k + model(x).argmax(1), minlength=k * k)
    return cm.view(k, k).cpu().numpy(), list(state.get("classes", data.classes))


def per_class_accuracy(cm: np.ndarray, classes: list[str]) -> pd.Series:
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = 100.0 * np.diag(cm) / cm.sum(axis=1)
    return pd.Series(acc, index=classes, name="accuracy (%)")


def plot_confusion(cm: np.ndarray, classes: list[str], title: str = "") -> Figure:
    fig = Figure(figsize=(6.5, 5.5), layout="constrained")
    ax = fig.add_subplot()
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = cm / cm.sum(axis=1, keepdims=True)
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    for i in range(len(classes)):
        for j in range(len(classes)):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=6,
                        color="white" if frac[i, j] > 0.5 else "black")
    ax.set(xlabel="predicted", ylabel="true", title=title or "Confusion matrix (best checkpoint)")
    fig.colorbar(im, ax=ax, shrink=0.8, label="fraction of the true class")
    return fig


# ----------------------------------------------------------------- output ----

def save_figure(fig: Figure, out: Path, stem: str) -> list[Path]:
    paths = [out / f"{stem}.png", out / f"{stem}.pdf"]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1], metadata={"CreationDate": None})  # same runs, same bytes
    return paths


def write_report(runs_dir: str | os.PathLike, out: str | os.PathLike, *, confusion: bool = False,
                 data_root: str | os.PathLike = "data") -> dict[str, list[Path]]:
    """Figures 11-13 (PNG and PDF), Table 1 (Markdown and CSV) and the joined logs into
    ``out``; with ``confusion=True`` also per-class accuracy and confusion matrices from
    each run's best checkpoint (runs whose test data is not at hand are skipped)."""
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise ReportError(f"--out {out} is a file: give a folder for the figures and tables")
    runs = load_runs(runs_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[Path]] = {}
    for metric, (stem, _, _) in FIGURES.items():
        written[metric] = save_figure(plot_curves(runs, metric), out, stem)
    table = results_table(runs)
    (out / "table1.md").write_text(table_markdown(table), encoding="utf-8")
    table.to_csv(out / "table1.csv", index=False)
    results_table(runs, by="run").to_csv(out / "runs.csv", index=False)
    written["table"] = [out / "table1.md", out / "table1.csv", out / "runs.csv"]
    if confusion:
        from .data import DataError

        for run_dir in find_runs(runs_dir):
            run = run_dir.name
            if run not in set(runs["run"]) or not run_dir.best.exists():
                continue
            try:
                cm, classes = confusion_matrix(run_dir.path, data_root=data_root)
            except (DataError, FileNotFoundError) as e:
                print(f"{run}: no confusion matrix ({e})")
                continue
            per_class_accuracy(cm, classes).to_csv(out / f"per_class_{run}.csv")
            written[f"confusion_{run}"] = save_figure(plot_confusion(cm, classes, run), out,
                                                      f"confusion_{run}") + [out / f"per_class_{run}.csv"]
    return written


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def show(fig: Figure) -> None:
    """Display a figure in a notebook (as a PNG), or do nothing elsewhere."""
    try:
        from IPython.display import Image, display
    except ImportError:
        return
    display(Image(data=_png(fig)))


class LiveCurves:
    """``train(..., on_epoch=LiveCurves())``: redraws accuracy and loss after each epoch in
    a notebook, in place (progress bars stay); silent in a terminal."""

    def __init__(self, every: int = 1):
        self.every = every
        self._handle = None

    def __call__(self, row: dict, history: list[dict]) -> None:
        if row["epoch"] % self.every:
            return
        try:
            from IPython import get_ipython
            from IPython.display import Image, display
        except ImportError:
            return
        shell = get_ipython()
        if shell is None or "Terminal" in type(shell).__name__:
            return
        df = pd.DataFrame(history).assign(run="test")
        fig = Figure(figsize=(11, 3.6), layout="constrained")
        acc_ax, loss_ax = fig.subplots(1, 2)
        plot_curves(df.assign(run="train"), "train_acc", ax=acc_ax)
        plot_curves(df, "test_acc", ax=acc_ax, title="Accuracy")
        plot_curves(df, "train_loss", ax=loss_ax)
        image = Image(data=_png(fig))
        if self._handle is None:
            self._handle = display(image, display_id=True)
        else:
            self._handle.update(image)
