"""The report's figures: Figures 11-13 (train accuracy, test accuracy and training loss
per epoch, one line per run, learning-rate steps marked), a confusion matrix, and the
same curves redrawn live in a notebook while a run trains."""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..registry import lookup
from .plotting import png_bytes


FIGURES = {  # metric -> (file stem, title, y label); numbered as in the report
    "train_acc": ("fig11_train_acc", "Figure 11: training accuracy", "accuracy (%)"),
    "test_acc": ("fig12_test_acc", "Figure 12: test accuracy", "accuracy (%)"),
    "train_loss": ("fig13_train_loss", "Figure 13: training loss", "cross-entropy"),
}


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
    lookup(list(runs.columns), metric, "metric")
    if ax is None:
        fig = Figure(figsize=(7, 4.2), layout="constrained")
        ax = fig.add_subplot()
    fig = ax.figure
    steps = set()
    for run, df in runs.groupby("run", sort=True):
        x, y = _gapped(df, metric)
        ax.plot(x, y, label=run, linewidth=1.2)
        if df.get("lr_schedule", pd.Series(["step"])).iloc[0] != "step":
            continue  # a learning rate that moves every step has no steps to mark
        lr = df.sort_values("epoch")[["epoch", "lr"]].to_numpy()
        steps |= {int(e) for (e, a), (_, b) in zip(lr[1:], lr[:-1]) if a != b}
    for e in sorted(steps):
        ax.axvline(e - 0.5, color="0.6", linestyle="--", linewidth=0.8, zorder=0)
    stem, default_title, ylabel = FIGURES.get(metric, (metric, metric, metric))
    ax.set(xlabel="epoch", ylabel=ylabel, title=title or default_title)
    if steps and "lr step" not in [line.get_label() for line in ax.get_lines()]:
        ax.plot([], [], color="0.6", linestyle="--", linewidth=0.8, label="lr step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax.grid(alpha=0.3)
    if runs.empty:
        ax.text(0.5, 0.5, "no run has finished an epoch yet", ha="center", va="center",
                transform=ax.transAxes, color="0.4")
    else:
        ax.legend(fontsize=8)
    return fig


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


class LiveCurves:
    """``train(..., on_epoch=LiveCurves())``: redraws accuracy and loss after each epoch in
    a notebook, in place (progress bars stay); silent in a terminal."""

    def __init__(self, every: int = 1):
        self.every = every
        self._handle = None

    def __call__(self, row: dict, history: list[dict]) -> None:
        if row["epoch"] % self.every:
            return
        try:  # optional: only a notebook has IPython; the package runs without it
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
        image = Image(data=png_bytes(fig))
        if self._handle is None:
            self._handle = display(image, display_id=True)
        else:
            self._handle.update(image)
