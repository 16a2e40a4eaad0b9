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
        try:
            env = read_json(run.environment)
        except (OSError, ValueError):
            env = {}
        df = pd.DataFrame(rows)
        for col in ("val_loss", "val_acc"):  # logs from before validation splits
            if col not in df:
                df[col] = np.nan
        df = df.astype({"val_loss": float, "val_acc": float})
        meta = {"run": run.name, "experiment": cfg.name, "model": cfg.model,
                "dataset": cfg.dataset, "seed": cfg.seed, "augment": cfg.augment.describe(),
                "epochs_planned": cfg.epochs, "width": cfg.width,
                "train_images": env.get("train_images", cfg.train_size),
                "val_images": env.get("val_images", cfg.val_size)}
        for i, (k, v) in enumerate(meta.items()):
            df.insert(i, k, v)
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
    """Table 1: per experiment (or per run with ``by="run"``) the model, data set, training
    images, width, augmentation, best test accuracy (%) and its epoch, final accuracy,
    epochs and training hours; with several runs (seeds) of one experiment, mean and sd.

    The best epoch is chosen on the validation split when the run has one (its test
    accuracy is then an honest estimate), else on the test set as the report did."""
    if by not in ("experiment", "run"):
        raise ValueError("by must be 'experiment' or 'run'")
    per_run = []
    for run, df in runs.groupby("run", sort=True):
        df = df.sort_values("epoch")
        key = "val_acc" if df["val_acc"].notna().any() else "test_acc"
        best = df.loc[df[key].idxmax()]  # first epoch reaching the maximum
        per_run.append({
            "run": run, "experiment": df["experiment"].iloc[0], "model": df["model"].iloc[0],
            "dataset": df["dataset"].iloc[0], "train_images": df["train_images"].iloc[0],
            "width": int(df["width"].iloc[0]), "seed": int(df["seed"].iloc[0]),
            "augmentation": df["augment"].iloc[0], "selected_on": key.split("_")[0],
            "best_acc": float(best["test_acc"]), "best_val_acc": float(best["val_acc"]),
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
        first = g.iloc[0]
        rows.append({
            "experiment": exp, "model": first["model"], "dataset": first["dataset"],
            "train_images": first["train_images"], "width": first["width"],
            "augmentation": first["augmentation"], "selected_on": first["selected_on"],
            "runs": len(g), "seeds": ",".join(str(v) for v in sorted(g["seed"])),
            "best_acc": g["best_acc"].mean(), "best_acc_sd": g["best_acc"].std(),
            "best_epoch": g["best_epoch"].mean() if len(g) > 1 else int(g["best_epoch"].iloc[0]),
            "final_acc": g["final_acc"].mean(), "final_acc_sd": g["final_acc"].std(),
            "epochs_done": int(g["epochs_done"].min()), "epochs_planned": int(g["epochs_planned"].max()),
            "hours": g["hours"].sum(), "report_best_acc": reported[0], "report_best_epoch": reported[1],
        })
    return pd.DataFrame(rows)


def comparable_to_report(row) -> bool:
    """The report's setting: CIFAR-12 in full, ResNet18's width, 300 epochs done."""
    return (row.dataset == "cifar12" and row.width == 64 and row.epochs_done >= 300
            and (row.train_images is None or pd.isna(row.train_images) or row.train_images >= 55_000))


def table_markdown(table: pd.DataFrame) -> str:
    """Table 1 as Markdown (mean ± sd where there are several runs). The report's number
    stands beside a row only when the row's setting is the report's; other rows say why
    they cannot be compared."""
    head = ["model", "data set", "train images", "width", "epochs", "seeds", "augmentation",
            "best test acc. (%)", "best epoch (chosen on)", "final acc. (%)", "hours",
            "report: best (epoch)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table.itertuples():
        n = getattr(r, "runs", 1)
        if math.isnan(getattr(r, "report_best_acc", float("nan"))):
            rep = ""
        elif comparable_to_report(r):
            rep = f"{r.report_best_acc:.3f} ({int(r.report_best_epoch)})"
        else:
            rep = "not comparable (other data, width or epochs)"
        images = "all" if r.train_images is None or pd.isna(r.train_images) else f"{int(r.train_images):,}"
        best_epoch = f"{r.best_epoch:.0f}" if n == 1 else f"{r.best_epoch:.1f} (mean)"
        lines.append("| " + " | ".join([
            f"{r.experiment}: {r.model}", r.dataset, images, str(r.width),
            f"{r.epochs_done}/{r.epochs_planned}", getattr(r, "seeds", "") or "1", r.augmentation,
            _fmt(r.best_acc, getattr(r, "best_acc_sd", float("nan")), n),
            f"{best_epoch} ({r.selected_on})",
            _fmt(r.final_acc, getattr(r, "final_acc_sd", float("nan")), n),
            f"{r.hours:.2f}", rep]) + " |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------ comparisons ----

def _correct(run_dir: Path):
    from .runs import read_predictions

    p = read_predictions(Path(run_dir) / "predictions.npz")
    return None if p is None else (p["pred"] == p["label"], p["label"])


def comparison_table(runs_dir: str | os.PathLike, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """For each pair of experiments: the difference of mean best test accuracy (B - A, in
    points) with a 95% interval - over seeds (Welch) when both have two or more, else a
    paired bootstrap over test images - and an exact McNemar p-value on the best epochs'
    predictions of the same test images, pooled over the seeds both ran; with a sentence
    a reader can quote. The report's sequence and the ablations come first."""
    from itertools import combinations

    from .experiments import ABLATIONS, REPORT_MODELS
    from . import stats

    runs = load_runs(runs_dir) if runs is None else runs
    per_run = results_table(runs, by="run")
    folders = {r.name: r.path for r in find_runs(runs_dir)}
    predictions = {}  # each run's file read once, not once per pair

    def correct(run):
        if run not in predictions:
            predictions[run] = _correct(folders[run])
        return predictions[run]

    exps = list(dict.fromkeys(per_run["experiment"]))
    first = [(a, b) for a, b in zip(REPORT_MODELS, REPORT_MODELS[1:])] + \
        [(ref, e) for e, (ref, _) in ABLATIONS.items()]
    pairs = [p for p in first if p[0] in exps and p[1] in exps]
    pairs += [p for p in combinations(exps, 2) if p not in pairs and p[::-1] not in pairs]
    rows = []
    for a, b in pairs:
        ra, rb = per_run[per_run["experiment"] == a], per_run[per_run["experiment"] == b]
        diff = rb["best_acc"].mean() - ra["best_acc"].mean()
        lo = hi = float("nan")
        how = ""
        if len(ra) >= 2 and len(rb) >= 2:
            lo, hi = stats.welch_interval(list(ra["best_acc"]), list(rb["best_acc"]))
            how = f"over seeds, {len(ra)} and {len(rb)} runs"
        b_only = c_only = images = matched = 0
        boot = None
        for seed in sorted(set(ra["seed"]) & set(rb["seed"])):
            ca = correct(ra[ra["seed"] == seed]["run"].iloc[0])
            cb = correct(rb[rb["seed"] == seed]["run"].iloc[0])
            if ca is None or cb is None or not np.array_equal(ca[1], cb[1]):
                continue  # no predictions saved, or not the same test images
            x, y = stats.discordant(ca[0], cb[0])
            b_only, c_only, images, matched = b_only + x, c_only + y, len(ca[0]), matched + 1
            boot = boot or (ca[0], cb[0], seed)
        if not how and boot is not None:  # one seed on a side: the matched pair, paired
            diff = 100 * (boot[1].mean() - boot[0].mean())
            lo, hi = stats.paired_bootstrap(boot[0], boot[1])
            how = f"seed {boot[2]}, bootstrap over test images"
        p = stats.mcnemar(b_only, c_only) if matched else float("nan")
        rows.append({"a": a, "b": b, "diff": diff, "ci_low": lo, "ci_high": hi, "interval": how,
                     "mcnemar_p": p, "only_a_right": b_only, "only_b_right": c_only,
                     "paired_images": images, "paired_seeds": matched,
                     "sentence": _sentence(a, b, diff, lo, hi, how, p, b_only, c_only, images, matched)})
    return pd.DataFrame(rows)


def _sentence(a, b, diff, lo, hi, how, p, x, y, images, seeds) -> str:
    """Two questions, kept apart. Does B's recipe beat A's? Only the spread over seeds
    answers that. Do these trained models disagree beyond chance on these test images?
    McNemar answers that, and says nothing about seed-to-seed variation (with several
    seeds it can be tiny while the interval over seeds still includes 0)."""
    text = f"{b} vs {a}: {diff:+.2f} points of test accuracy"
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
    if seeds:
        text += (f"; McNemar p = {p:.3g} on {images:,} paired test images x {seeds} seed(s) "
                 f"({x} right only for {a}, {y} only for {b}): the trained models "
                 f"{'disagree' if p < 0.05 else 'do not disagree'} beyond chance at the 5% level")
    else:
        text += "; no paired predictions (predictions.npz) for a McNemar test"
    return f"{text}. {verdict[0].upper()}{verdict[1:]}."


def per_class_table(runs_dir: str | os.PathLike, classes=None) -> pd.DataFrame:
    """Test accuracy (%) per class at each run's best epoch (from predictions.npz; runs
    without it are left out), one column per run, with the number of test images."""
    from .runs import read_json

    cols, counts = {}, None
    for run in find_runs(runs_dir):
        c = _correct(run.path)
        if c is None:
            continue
        correct, labels = c
        k = int(labels.max()) + 1
        hits = np.bincount(labels, weights=correct, minlength=k)
        counts = np.bincount(labels, minlength=k)
        cols[run.name] = 100 * hits / np.maximum(counts, 1)
        if classes is None:
            try:
                ds = read_json(run.config).get("dataset")
            except (OSError, ValueError):
                ds = None
            from .data import CIFAR10_CLASSES, CIFAR12_CLASSES
            classes = {"cifar12": CIFAR12_CLASSES, "cifar10": CIFAR10_CLASSES}.get(ds)
    if not cols:
        return pd.DataFrame()
    k = max(len(v) for v in cols.values())
    names = list(classes)[:k] if classes and len(classes) >= k else [f"class {i}" for i in range(k)]
    table = pd.DataFrame({n: v for n, v in cols.items()}, index=names)
    table.insert(0, "test images", counts[:k])
    table.index.name = "class"
    return table


def status_table(runs_dir: str | os.PathLike, names: list[str] | None = None,
                 epochs: int | None = None) -> pd.DataFrame:
    """One row per run folder under ``runs_dir`` (or per name in ``names``, which need not
    exist yet): state, epochs done and planned, last update, estimated hours left."""
    from .runs import run_status

    root = Path(runs_dir).expanduser()
    folders = [root / n for n in names] if names is not None else [r.path for r in find_runs(root)]
    return pd.DataFrame([run_status(f, epochs) for f in folders],
                        columns=["run", "experiment", "state", "epochs_done", "epochs",
                                 "last_update", "epoch_seconds", "hours_left"])


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


def inspect_runs(runs_dir: str | os.PathLike, out: str | os.PathLike, *,
                 data_root: str | os.PathLike = "data", device: str = "cpu",
                 images: int | None = None) -> tuple[dict[str, list[Path]], Figure | None]:
    """``inspection.inspect`` for every run folder with a checkpoint, into
    ``out/inspect/<run>/``, and one robustness figure with all runs side by side (also
    ``robustness_all.png``/``.csv`` in ``out``). Runs whose data is not at hand are
    skipped with a line saying why."""
    from .data import DataError
    from .inspection import InspectionError, inspect, plot_robustness

    out = Path(out).expanduser()
    written, tables = {}, {}
    for run in find_runs(runs_dir):
        if not run.has_checkpoint() and not run.best.exists():
            continue
        try:
            files = inspect(run.path, out / "inspect" / run.name, data_root=data_root,
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
                 device: str = "cpu") -> dict[str, list[Path]]:
    """Figures 11-13 (PNG and PDF), Table 1 (Markdown and CSV) and the joined logs into
    ``out``; with ``confusion=True`` also per-class accuracy and confusion matrices from
    each run's best checkpoint (runs whose test data is not at hand are skipped); with
    ``inspect=True`` also ``inspect_runs`` (attention maps, robustness, cost, mistakes)."""
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
    status_table(runs_dir).to_csv(out / "status.csv", index=False)
    written["table"] = [out / "table1.md", out / "table1.csv", out / "runs.csv", out / "status.csv"]
    comparison = comparison_table(runs_dir, runs)
    if len(comparison):
        comparison.to_csv(out / "comparison.csv", index=False)
        (out / "comparison.md").write_text(
            "# Comparisons\n\n" + "\n".join(f"- {t}" for t in comparison["sentence"]) + "\n",
            encoding="utf-8")
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
            "# Test accuracy per class at the best epoch (%)\n\n| " + " | ".join(head) + " |\n|"
            + "---|" * len(head) + "\n" + "\n".join(body) + "\n" + note, encoding="utf-8")
        written["per_class"] = [out / "per_class.csv", out / "per_class.md"]
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
    if inspect:
        written.update(inspect_runs(runs_dir, out, data_root=data_root, device=device)[0])
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
