"""A run folder's contract: what lives in ``<home>/runs/<run name>/`` and how it is read.

``config.json`` the Experiment; ``environment.json`` where it ran; ``metrics.csv`` one
row per finished epoch; ``last.pt`` / ``last.prev.pt`` / ``best.pt`` checkpoints
(``last.next.pt`` for an instant while one is installed); ``lease.json`` names the one
trainer that may write; ``drive.csv`` (a run on Drive) what Drive's quota said at each
start, mirror and stop. These files alone resume a run and redraw its figures.
"""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any, Iterable, NamedTuple

import numpy as np

from .files import atomic_write, candidates, explain_os_error, temp_path

METRIC_FIELDS = ("epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc",
                 "val_loss", "val_acc", "seconds", "images_per_s", "time",
                 "test_acc_tta", "val_acc_tta")
# Each column in one named set, by name (never by position: a new column would move into
# a set unseen). The columns a repeated run reproduces exactly, those the tests compare to
# the bit; val_* are empty without a validation split.
DETERMINISTIC_FIELDS = ("epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc",
                        "val_loss", "val_acc")
# flip TTA's accuracies, exact too (empty without TTA): written in full, as the above
TTA_FIELDS = ("test_acc_tta", "val_acc_tta")
# wall-clock: differ between two runs of the same experiment; written to 3 decimals
WALL_CLOCK_FIELDS = ("seconds", "images_per_s", "time")


class RunDir:
    """Paths of one run folder."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser()

    config = property(lambda self: self.path / "config.json")
    environment = property(lambda self: self.path / "environment.json")
    metrics = property(lambda self: self.path / "metrics.csv")
    last = property(lambda self: self.path / "last.pt")
    last_prev = property(lambda self: self.path / "last.prev.pt")
    best = property(lambda self: self.path / "best.pt")
    lease = property(lambda self: self.path / "lease.json")
    predictions = property(lambda self: self.path / "predictions.npz")
    drive_log = property(lambda self: self.path / "drive.csv")
    events = property(lambda self: self.path / "events.out.tfevents.colabkit")  # TensorBoard's

    @property
    def name(self) -> str:
        return self.path.name

    def has_checkpoint(self) -> bool:
        return any(p.exists() for p in candidates(self.last))

    def ensure_writable(self) -> None:
        """Create the folder and prove a file can be written there, before any training."""
        if self.path.exists() and not self.path.is_dir():
            raise PermissionError(f"the run folder {self.path} is a file, not a folder: choose "
                                  "another run folder (a file is never overwritten)")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = temp_path(self.path / "write-test")
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as e:
            raise PermissionError(f"cannot write to the run folder {self.path} ({e}): choose "
                                  "a folder you can write to (on Colab, under the mounted "
                                  "Drive)") from e

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"


class RunFolderError(OSError):
    """A file of the run folder could not be written; the message says what to do."""


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` whole or not at all."""
    try:
        with atomic_write(path, "w", encoding="utf-8", newline="") as f:
            f.write(text)
    except OSError as e:
        raise RunFolderError(e.errno, f"could not write {path}: {explain_os_error(e)} ({e}). "
                             "The file's previous version is intact. Fix the cause and run "
                             "the same command again to resume.") from e


def write_json(path: Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


_RAISE = object()


def read_json(path: Path, default: Any = _RAISE) -> Any:
    """The JSON in ``path``; ``default`` instead when given and the file is absent or
    unreadable (a run folder half copied, a record never written)."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        if default is _RAISE:
            raise
        return default


def format_row(row: dict) -> dict:
    """Fixed formatting, so the same numbers always give the same bytes."""
    out = {}
    for k in METRIC_FIELDS:
        v = row.get(k, "")
        if isinstance(v, float):
            v = f"{v:.3f}" if k in WALL_CLOCK_FIELDS else repr(v)  # exact unless wall-clock
        out[k] = v
    return out


def write_metrics(path: Path, history: Iterable[dict]) -> None:
    """Rewrite metrics.csv from the history, atomically: the file is always whole and
    holds each finished epoch once."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=METRIC_FIELDS, lineterminator="\n")
    w.writeheader()
    for row in history:
        w.writerow(format_row(row))
    write_text_atomic(path, buf.getvalue())


def read_metrics(path: Path) -> list[dict]:
    """Rows of metrics.csv with numbers parsed; an empty list if there is no file."""
    if not Path(path).is_file():
        return []
    rows = []
    with open(path, encoding="utf-8", newline="") as f:
        for r in csv.DictReader(f):
            row = {}
            for k, v in r.items():
                if k == "time":
                    row[k] = v
                elif v in ("", None):
                    row[k] = None
                elif k == "epoch":
                    row[k] = int(v)
                else:
                    row[k] = float(v)
            rows.append(row)
    return rows


class SelectionKey(NamedTuple):
    """What picks a run's best epoch: the accuracy of ``split`` (``"val"`` or ``"test"``),
    with flip TTA or not (``tta``). Made by ``selection_key``; its columns are named here
    alone, never pieced together from a column's name."""
    split: str
    tta: bool

    def accuracy(self, split: str) -> str:
        """The metrics.csv column of ``split``'s accuracy (``"val"`` or ``"test"``), measured
        as this key measures: ``test_acc``, or ``test_acc_tta`` with TTA."""
        return f"{split}_acc_tta" if self.tta else f"{split}_acc"

    @property
    def column(self) -> str:
        """The metrics.csv column whose maximum is the best epoch."""
        return self.accuracy(self.split)

    @classmethod
    def of_checkpoint(cls, state: dict) -> "SelectionKey":
        """The key a ``best.pt`` was chosen by. It stores the split alone, as the string
        ``selected_on`` (``"val"`` or ``"test"``; older ones have none: chosen on test), so
        that any colabkit reads it; TTA shows as the TTA accuracy it holds."""
        split = state.get("selected_on") or "test"
        if split not in ("val", "test"):
            raise ValueError(f"best.pt says it was selected on {split!r}, not 'val' or 'test': "
                             "export it again from its run folder")
        return cls(split, state.get("test_acc_tta") is not None)


def selection_key(val_accs, tta: bool = False) -> SelectionKey:
    """What picks a run's best epoch, given its logged validation accuracies (None or NaN
    where there is none): validation accuracy when the run has a validation split (the
    honest way), else test accuracy (the report's way); with flip TTA, its accuracy."""
    has_val = any(v is not None and v == v for v in val_accs)  # NaN != NaN
    return SelectionKey("val" if has_val else "test", bool(tta))


def save_predictions(path: Path, epoch: int, predictions: dict, labels) -> None:
    """The best epoch's predicted class for each test image (``pred``; with flip TTA also
    ``pred_tta``), with the true labels: what the report needs for per-class accuracy and
    paired tests, without the data."""
    arrays = {k: np.asarray(v, dtype=np.int16) for k, v in predictions.items()}
    with atomic_write(path) as f:
        np.savez(f, epoch=np.array(int(epoch)), label=np.asarray(labels, dtype=np.int16), **arrays)


def read_predictions(path: Path) -> dict | None:
    """{'epoch', 'pred', 'label', 'pred_tta' (None without TTA)} or None if absent or
    unreadable."""
    try:
        with np.load(path) as z:
            out = {"epoch": int(z["epoch"]), "pred": z["pred"], "label": z["label"],
                   "pred_tta": z["pred_tta"] if "pred_tta" in z.files else None}
    except (OSError, KeyError, ValueError):
        return None
    return out if len(out["pred"]) == len(out["label"]) else None


def find_runs(runs_dir: str | os.PathLike) -> list[RunDir]:
    """Run folders under ``runs_dir`` (or ``runs_dir`` itself if it is one), sorted."""
    root = Path(runs_dir).expanduser()
    if (root / "config.json").is_file():
        return [RunDir(root)]
    return [RunDir(p.parent) for p in sorted(root.glob("*/config.json"))]


