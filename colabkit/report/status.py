"""Where runs stand, from their folders alone (useful while they train in another tab):
finished, running, stalled, stopped or not started, with the time left. It reads the run
folder's files and its lease, so it sits above both."""
from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import pandas as pd

from ..colab import quota
from ..colab.lease import Lease
from ..experiments import PRESETS, QUEUE, run_name, with_recipe
from ..rundir.runs import RunDir, find_runs, read_json, read_metrics


def run_status(run_dir: str | os.PathLike, epochs: int | None = None,
               now: float | None = None) -> dict:
    """Where a run stands, from its folder alone (useful while it trains in another tab):
    ``state`` is ``finished``, ``running`` (a trainer holds the folder, and a new one would
    be refused), ``stalled`` (a trainer holds it but is gone: its process died, or, on
    another machine, it has been silent past its limit of a few epoch times; running it
    again resumes it), ``stopped`` (stopped cleanly: run it again to continue) or
    ``not started``. Running or stalled is the lease's own rule (``Lease.stalled``);
    with epochs done and planned, the last update and an estimate of the time left; for a
    run on Drive, ``drive_growth_gb``: how much Drive's usage grew beyond the run's own
    files over its sessions (``drive.csv``: Trash, or other writers; the mount lags)."""
    run = RunDir(run_dir)
    now = time.time() if now is None else now
    cfg = read_json(run.config, {})
    planned = epochs or cfg.get("epochs")
    rows = read_metrics(run.metrics)
    done = len(rows)
    seconds = [r["seconds"] for r in rows[-5:] if isinstance(r.get("seconds"), float)]
    epoch_s = statistics.median(seconds) if seconds else None
    lease = Lease(run.lease)
    holder = lease.holder()
    if planned and done >= planned:
        state = "finished"
    elif holder is not None:  # running exactly while a new trainer would be refused
        state = "stalled" if lease.stalled(holder, now) else "running"
    elif done == 0:
        state = "not started"
    else:
        state = "stopped"
    grown = quota.run_growth(quota.read_log(run.drive_log))
    left = (planned - done) * epoch_s if planned and epoch_s and done < planned else (0.0 if state == "finished" else None)
    return {"run": run.name, "experiment": cfg.get("name"), "state": state, "epochs_done": done,
            "epochs": planned, "last_update": rows[-1].get("time") if rows else None,
            "epoch_seconds": epoch_s, "hours_left": None if left is None else left / 3600,
            "drive_growth_gb": None if grown is None else grown / 1e9}


def status_table(runs_dir: str | os.PathLike, names: list[str] | None = None,
                 epochs: int | None = None) -> pd.DataFrame:
    """One row per run folder under ``runs_dir`` (or per name in ``names``, which need not
    exist yet): state, epochs done and planned, last update, estimated hours left, and
    Drive's growth beyond the run's own files (runs on Drive)."""
    root = Path(runs_dir).expanduser()
    folders = [root / n for n in names] if names is not None else [r.path for r in find_runs(root)]
    return pd.DataFrame([run_status(f, epochs) for f in folders],
                        columns=["run", "experiment", "state", "epochs_done", "epochs",
                                 "last_update", "epoch_seconds", "hours_left",
                                 "drive_growth_gb"])


def queue_status(runs_dir: str | os.PathLike, runs=QUEUE, epochs: int | None = None,
                 max_minutes: float | None = None, recipe: str = "report") -> pd.DataFrame:
    """The status table of the queued runs (``status_table``) trained by ``recipe``
    (``epochs``: planned, default the recipe's), with the time left of a run
    that has no measured epoch yet estimated from the others' epoch times; with
    ``max_minutes`` (a session's budget) also ``fits``: whether each unfinished run, taken
    in queue order, ends within it (``yes``), starts but ends in a later session
    (``partly``) or waits for one (``no``)."""
    epochs = epochs or with_recipe(PRESETS[runs[0][1]], recipe).epochs
    table = status_table(runs_dir, [run_name(name, recipe, epochs) for name, _ in runs], epochs)
    # a run not started has no config.json yet: its experiment is the queue's preset
    table["experiment"] = [e if isinstance(e, str) else preset
                           for e, (_, preset) in zip(table["experiment"], runs)]
    known = table["epoch_seconds"].dropna()
    if len(known):
        guess = (table["epochs"].fillna(epochs or 0) - table["epochs_done"]) * known.median() / 3600
        table["hours_left"] = table["hours_left"].fillna(guess)
    if max_minutes is not None:
        table["fits"] = _fits(table["hours_left"], max_minutes / 60)
    return table


def _fits(hours_left: pd.Series, budget_hours: float) -> list[str]:
    out, used = [], 0.0
    for h in hours_left:
        if pd.isna(h):
            out.append("unknown")
        elif h == 0:
            out.append("done")
        else:
            out.append("yes" if used + h <= budget_hours else "partly" if used < budget_hours else "no")
            used += h
    return out
