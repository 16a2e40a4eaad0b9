"""What a run writes after each epoch, and when: ``last.pt`` (weights, optimizer, grad
scaler, the history), ``best.pt`` and the best epoch's ``predictions.npz``, then
``metrics.csv`` and TensorBoard's event file from the checkpoint's history, then the Drive
mirror; on the cadence asked
(every epoch, or every N minutes), always at the end, on the writer's thread on a GPU."""
from __future__ import annotations

import threading
import time
from typing import NamedTuple

from ..colab.storage import RunStorage
from ..rundir.checkpoint import CheckpointWriter, save_checkpoint
from ..rundir.events import write_events
from ..rundir.runs import save_predictions, selection_key, write_metrics


class Best(NamedTuple):
    """The best epoch's checkpoint (weights, no optimizer) and test predictions, until
    they are written."""
    checkpoint: dict
    predictions: dict | None


class Saver:
    """Checkpoints (last.pt, best.pt) and metrics.csv in the working copy, then the Drive
    mirror, on the writer's thread; on the cadence asked, always at the end."""

    def __init__(self, storage: RunStorage, background: bool, minutes: float | None,
                 history: list[dict], start: int, labels, tta: bool = False):
        self.storage, self.minutes, self.labels, self.tta = storage, minutes, labels, tta
        self.writer = CheckpointWriter(background=background)
        column = selection_key([r.get("val_acc") for r in history], tta).column
        self.best_acc = max((r[column] for r in history if r.get(column) is not None), default=-1.0)
        self.saved_epoch = start
        self.snapshot: dict | None = None
        self.best_pending: Best | None = None
        self.last_save = time.perf_counter()
        self._lock = threading.RLock()  # a rank's watcher may close while the loop commits

    def epoch_done(self, snapshot: dict, row: dict, final: bool, predictions=None) -> None:
        with self._lock:  # the snapshot and its best together, as the watcher's close sees them
            self.snapshot = snapshot
            key = selection_key([row.get("val_acc")], self.tta)
            if row[key.column] > self.best_acc:
                self.best_acc = row[key.column]
                # its precision: the report's model path predicts as this epoch was evaluated
                best = {k: snapshot[k] for k in ("format", "epoch", "config", "model", "classes",
                                                 "precision")}
                best.update(test_acc=row["test_acc"], val_acc=row.get("val_acc"),
                            selected_on=key.split)  # a plain string: SelectionKey.of_checkpoint
                if self.tta:
                    best.update(test_acc_tta=row["test_acc_tta"], val_acc_tta=row.get("val_acc_tta"))
                self.best_pending = Best(best, predictions)
            if final or self.minutes is None or time.perf_counter() - self.last_save >= self.minutes * 60:
                self._commit()

    def commit(self) -> None:
        with self._lock:
            self._commit()

    def _commit(self) -> None:
        snap, best, work, storage = self.snapshot, self.best_pending, self.storage.work, self.storage
        if snap is None or self.saved_epoch >= snap["epoch"]:
            return

        def job():
            if best is not None:
                save_checkpoint(best.checkpoint, work.best, keep_previous=False)
                if best.predictions:  # the best epoch's test predictions, for the report
                    save_predictions(work.predictions, best.checkpoint["epoch"], best.predictions,
                                     self.labels)
            save_checkpoint(snap, work.last)
            write_metrics(work.metrics, snap["history"])  # after the checkpoint commits
            write_events(work, snap["history"], snap["config"])  # TensorBoard's, the same rows
            storage.committed(snap["epoch"], best is not None)

        self.writer.submit(job)
        self.saved_epoch, self.best_pending, self.last_save = snap["epoch"], None, time.perf_counter()

    def close(self) -> None:
        try:
            self.commit()
        finally:
            self.writer.wait()
