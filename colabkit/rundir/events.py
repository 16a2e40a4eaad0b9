"""TensorBoard event files of a run, written from its history as ``metrics.csv`` is.

Trainers that append to an event file at every step log the steps again after each resume
(zigzag curves, a run split over several files). Here the file is a function of the
checkpoint's history: one event per finished epoch (x axis: the epoch), with the values of
``metrics.csv``, and the run's ``Experiment`` for TensorBoard's HParams tab. Its bytes
depend only on the history, so the file written after epoch N+1 starts with the file
written after epoch N: it is extended by appending (TensorBoard reads on from where it
stopped), and rewritten whole (atomically) only when the history differs from what the
file holds (a resume from an older checkpoint). ``tensorboard`` is optional: it is
imported where it is used, and without it nothing is written.
"""
from __future__ import annotations

import functools
import os
from datetime import datetime
from pathlib import Path
from typing import Iterable

from .files import atomic_write
from .runs import RunDir, format_row, read_json, read_metrics, selection_key

# metrics.csv's columns, as TensorBoard tags: grouped into sections by the part before "/"
TAGS = {
    "train_loss": "loss/train", "test_loss": "loss/test", "val_loss": "loss/val",
    "train_acc": "accuracy/train", "test_acc": "accuracy/test", "val_acc": "accuracy/val",
    "test_acc_tta": "accuracy/test_flip_tta", "val_acc_tta": "accuracy/val_flip_tta",
    "lr": "lr", "images_per_s": "speed/images_per_s", "seconds": "speed/epoch_seconds",
}
# the HParams tab's metrics: the test accuracy at the best epoch so far (as the run selects
# it: on validation when it has a split, with flip TTA when it uses it) and at the last
BEST, FINAL = "hparams/best_test_acc", "hparams/final_test_acc"
INSTALL = ("TensorBoard files are not written: tensorboard is not installed (pip install "
           "tensorboard, or pip install 'colabkit[tensorboard]'; Colab has it).")


@functools.lru_cache(maxsize=1)
def available() -> bool:
    """True when ``tensorboard``'s event and HParams protocol buffers can be imported
    (Colab preinstalls it); an install whose protobuf does not fit counts as absent."""
    try:
        from tensorboard.compat.proto import event_pb2, summary_pb2  # noqa: F401
        from tensorboard.plugins.hparams import plugin_data_pb2  # noqa: F401
        from tensorboard.summary.writer import record_writer  # noqa: F401
    except Exception:  # noqa: BLE001 - ImportError, or a protobuf that does not fit it
        return False
    return True


def hparams_of(config: dict, prefix: str = "") -> dict:
    """The config as HParams takes it, one column per setting: nested settings as
    ``augment.hflip``; bools, numbers and strings as they are; a list as ``"90,180"``;
    an empty list or None as ``"none"``."""
    out = {}
    for k, v in sorted(config.items()):
        if isinstance(v, dict):
            out.update(hparams_of(v, f"{prefix}{k}."))
        elif isinstance(v, (bool, int, float)):
            out[prefix + k] = v
        elif isinstance(v, (list, tuple)):
            out[prefix + k] = ",".join(str(x) for x in v) or "none"
        else:
            out[prefix + k] = "none" if v is None else str(v)
    return out


def _encode(history: list[dict], config: dict | None, finished: bool) -> bytes:
    """The event file's bytes: a function of its arguments alone (deterministic protobuf
    serialization, wall times from the history's own clock)."""
    from google.protobuf import struct_pb2
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter

    class Sink:
        def __init__(self):
            self.parts = []

        def write(self, data):
            self.parts.append(data)

    sink = Sink()
    records = RecordWriter(sink)

    def when(row) -> float:
        try:
            return datetime.fromisoformat(str(row.get("time"))).timestamp()
        except ValueError:
            return 0.0

    def event(wall_time, step=0, summary=None, **fields):
        e = Event(wall_time=wall_time, step=step, **fields)
        if summary is not None:
            e.summary.CopyFrom(summary)
        records.write(e.SerializeToString(deterministic=True))

    def hparams(tag, **data):
        content = plugin_data_pb2.HParamsPluginData(version=metadata.PLUGIN_DATA_VERSION, **data)
        meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(
            plugin_name=metadata.PLUGIN_NAME, content=content.SerializeToString(deterministic=True)))
        return Summary(value=[Summary.Value(tag=tag, metadata=meta)])

    start = when(history[0]) if history else 0.0
    event(start, file_version="brain.Event:2")
    if config is not None:
        values = hparams_of(config)
        # no experiment summary: TensorBoard takes the first one it finds as every run's,
        # so it would drop the settings a run differs in. From the runs' session records it
        # builds the table itself: a setting's column is typed from its values (a number in
        # one run and None in another reads as text) and every scalar is a metric column.
        session = plugin_data_pb2.SessionStartInfo(start_time_secs=start)
        for k, v in values.items():
            session.hparams[k].CopyFrom(
                struct_pb2.Value(bool_value=v) if isinstance(v, bool) else
                struct_pb2.Value(number_value=v) if isinstance(v, (int, float)) else
                struct_pb2.Value(string_value=v))
        event(start, summary=hparams(metadata.SESSION_START_INFO_TAG, session_start_info=session))
    key = selection_key([r.get("val_acc") for r in history], (config or {}).get("tta", False))
    test = key.accuracy("test")
    best = None
    for row in history:
        text = format_row(row)  # the values as metrics.csv holds them
        values = [Summary.Value(tag=tag, simple_value=float(text[k]))
                  for k, tag in TAGS.items() if text.get(k) not in ("", None)]
        if best is None or row[key.column] > best[key.column]:
            best = row
        if row.get(test) is not None:
            values += [Summary.Value(tag=BEST, simple_value=float(format_row(best)[test])),
                       Summary.Value(tag=FINAL, simple_value=float(text[test]))]
        event(when(row), step=int(row["epoch"]), summary=Summary(value=values))
    if finished and config is not None and history:
        end = plugin_data_pb2.SessionEndInfo(status=api_pb2.STATUS_SUCCESS,
                                             end_time_secs=when(history[-1]))
        event(when(history[-1]), step=int(history[-1]["epoch"]),
              summary=hparams(metadata.SESSION_END_INFO_TAG, session_end_info=end))
    return b"".join(sink.parts)


def write_events(run: RunDir, history: Iterable[dict] | None = None,
                 config: dict | None = None) -> bool:
    """Bring ``run``'s event file in line with its history (default: its metrics.csv) and
    config (default: its config.json): append what is new, or rewrite it atomically when
    it holds something else. False when nothing was written: without tensorboard, or
    before the first epoch (a file then would only be replaced at the first epoch, its
    header's time being the first epoch's)."""
    if not available():
        return False
    history = read_metrics(run.metrics) if history is None else list(history)
    if not history:
        return False
    config = read_json(run.config, None) if config is None else config
    finished = bool(config) and bool(history) and int(history[-1]["epoch"]) >= int(config.get("epochs", 0))
    data = _encode(history, config, finished)
    path = run.events
    try:
        with open(path, "rb") as f:
            held = f.read()
    except FileNotFoundError:
        held = b""
    if held == data:
        return True
    if held and data.startswith(held):  # the same history and more: append the rest
        with open(path, "ab") as f:
            f.write(data[len(held):])
            f.flush()
            os.fsync(f.fileno())
        return True
    with atomic_write(path) as f:
        f.write(data)
    return True


def write_tensorboard(runs_dir: str | os.PathLike) -> list[Path]:
    """Event files for every run folder under ``runs_dir`` that has a ``metrics.csv``
    (runs of older colabkit versions, the logs in ``logs/``), from it and config.json.
    Returns the files written; raises ``ImportError`` (with how to install) without
    tensorboard."""
    if not available():
        raise ImportError(INSTALL)
    root = Path(runs_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder: name the folder that holds the run "
                                "folders (each with its metrics.csv)")
    written = []
    for metrics in sorted(root.rglob("metrics.csv")):  # run folders at any depth (logs/)
        if write_events(RunDir(metrics.parent)):
            written.append(metrics.parent / RunDir(metrics.parent).events.name)
    return written


__all__ = ["BEST", "FINAL", "INSTALL", "TAGS", "available", "hparams_of", "write_events",
           "write_tensorboard"]
