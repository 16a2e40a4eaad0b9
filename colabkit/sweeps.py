"""Many runs, one after another: the report's four models queued across Colab sessions
(``run_queue``), each resuming where it stopped and skipped once finished, within one
time budget for the whole session."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import fields
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .colab.drive import DriveError, flush_drive, flush_seconds
from .data.sources import Dataset, load_dataset
from .experiments import PRESETS, QUEUE, Experiment, get_experiment, run_name
from .registry import check_keys
from .report.status import queue_status
from .training.loop import train


def _split(settings: dict) -> tuple[dict, dict]:
    """(Experiment fields, train() keywords) of a mixed settings dict."""
    keys = {f.name for f in fields(Experiment)}
    return ({k: v for k, v in settings.items() if k in keys},
            {k: v for k, v in settings.items() if k not in keys})


def run_queue(runs_dir: str | os.PathLike, *, data: Dataset | None = None,
              data_root: str | os.PathLike = "data", max_minutes: float | None = None,
              runs=QUEUE, progress: bool = True, **settings) -> list[dict]:
    """Train the queued runs (by default the report's four models into
    ``runs_dir/01_resnet18_basic`` ... ``04_resnet18_da_cbam_aspp``) one after another.

    Each run resumes where it stopped and a finished one is skipped, so calling this again
    in each new session continues the queue. ``max_minutes`` is the budget of the whole
    call: the run in progress stops after its last epoch that fits, and later runs wait
    for the next session; the status table printed first says which runs fit it
    (``fits``, from measured epoch times). ``recipe="fast"`` trains the queue by the fast
    recipe in its own folders (``01_resnet18_basic-fast``, ...). ``settings`` are
    Experiment fields (``recipe``, ``epochs``, ``dataset``,
    ``width``, ``batch_size``, ``train_size``, ``test_size``, ...) and ``train`` keywords
    (``device``, ``mirror_minutes``, ``takeover``, ``precision``, ...), applied to every run.
    Prints the status table first; returns each run's result (``status`` ``not reached``
    for runs the budget left for later).

    Drive is flushed once, at the end of the queue (in Colab each flush unmounts Drive and
    the remount asks the browser for access again: with the tab closed overnight nobody
    answers). Each run's files reach Drive at its stop and upload in the background while
    the next one trains; a Drive fault at a stop warns and the queue goes on.
    """
    started = time.perf_counter()
    exp_kw, train_kw = _split(settings)
    flush = train_kw.pop("flush", True)
    reserve = flush_seconds(runs_dir) if flush and max_minutes is not None else 0.0
    reserve = min(reserve, (max_minutes or 0) * 15)  # at most a quarter of the budget
    recipe = exp_kw.pop("recipe", None) or "report"
    exps = [(name, get_experiment(preset, recipe, **exp_kw)) for name, preset in runs]
    exps = [(run_name(name, recipe, e.epochs), e) for name, e in exps]
    runs_dir = Path(runs_dir).expanduser()
    table = queue_status(runs_dir, runs, exps[0][1].epochs, max_minutes, recipe)
    if progress:
        print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"), flush=True)
    todo = [(n, e) for (n, e), state in zip(exps, table["state"]) if state != "finished"]
    if todo and data is None:
        data = load_dataset(todo[0][1].dataset, data_root)
    bar = tqdm(total=sum(e.epochs for _, e in exps), initial=int(table["epochs_done"].sum()),
               desc="queue", unit="ep", disable=not progress, dynamic_ncols=True)
    results = []
    try:
        for name, exp in exps:
            if (name, exp) not in todo:
                results.append(train(exp, runs_dir / name, progress=False, flush=False, **train_kw))
                continue
            left = None if max_minutes is None else \
                max_minutes - (time.perf_counter() - started + reserve) / 60
            if left is not None and left <= 0:
                results.append({"run_dir": str(runs_dir / name), "experiment": exp.name,
                                "status": "not reached"})
                continue
            bar.write(f"{name}: training ({exp.name}, {exp.epochs} epochs)")
            res = train(exp, runs_dir / name, data=data, max_minutes=left, progress=False,
                        on_epoch=lambda row, history: bar.update(1), flush=False, **train_kw)
            results.append(res)
            if res["status"] == "interrupted":
                break
    finally:
        bar.close()
        if flush:
            try:
                flush_drive(runs_dir)
            except DriveError as e:
                warnings.warn(f"Drive: {e} at the end of the queue. The runs' files are in "
                              "Drive's cache and upload by themselves while this runtime lives; "
                              + ("run colabkit.flush_drive() to force the upload." if e.mounted
                                 else "run colabkit.mount_drive() (approve Drive access) before "
                                 "using the run folders again."), stacklevel=2)
    return results


def sweep_runs(experiments, seeds, runs_dir, recipe: str = "report",
               epochs: int | None = None) -> list[tuple[str, int, Path]]:
    """(experiment, seed, run folder) of every pair: ``runs_dir/<experiment>-s<seed>``
    (``<experiment>-fast-s<seed>`` for the fast recipe, ``<experiment>-30ep-s<seed>`` for a
    length other than the recipe's: ``run_name``)."""
    check_keys(experiments, PRESETS, "experiment")
    return [(e, s, Path(runs_dir).expanduser() / f"{run_name(e, recipe, epochs)}-s{s}")
            for e in experiments for s in seeds]


def sweep(experiments, seeds, runs_dir: str | os.PathLike, *, parallel: int = 1,
          data: Dataset | None = None, data_root: str | os.PathLike = "data",
          cli_args: list[str] | None = None, **settings) -> list[dict]:
    """Train every (experiment, seed) in ``runs_dir/<experiment>-s<seed>``
    (``<experiment>-fast-s<seed>`` with ``recipe="fast"``), one after another, each
    resuming and the finished skipped; ``settings`` as for ``run_queue``.

    ``parallel=N`` runs N at once, each in its own process (``python -m colabkit train``
    with ``cli_args``, the command line's train flags): one per GPU where there are
    several, else CPU processes sharing the cores. Returns each run's summary."""
    recipe = settings.pop("recipe", None) or "report"
    runs = sweep_runs(experiments, seeds, runs_dir, recipe, settings.get("epochs"))
    if parallel <= 1:
        exp_kw, train_kw = _split({**settings, "recipe": recipe})
        results = []
        for name, seed, folder in runs:
            results.append(train(get_experiment(name, seed=seed, **exp_kw), folder, data=data,
                                 data_root=data_root, **train_kw))
            if results[-1]["status"] == "interrupted":  # Ctrl-C stops the sweep, not one run
                break
        return results
    return _parallel(runs, parallel, cli_args or [], data_root)


def _child_summary(out: str) -> dict | None:
    """The summary a ``train --json`` child printed (the last JSON object with a status in
    its output, whatever the child printed before or after it), or None."""
    decoder, at = json.JSONDecoder(), len(out)
    while (at := out.rfind("{", 0, at)) >= 0:
        try:
            found, _ = decoder.raw_decode(out, at)
        except ValueError:
            continue
        if isinstance(found, dict) and "status" in found:
            return found
    return None


def _parallel(runs, parallel: int, cli_args: list[str], data_root) -> list[dict]:
    """Child processes, at most ``parallel`` at once; GPUs shared out by
    CUDA_VISIBLE_DEVICES, CPU threads divided among the children. Each child's stdout goes
    to a temporary file, read once it has exited: a pipe read only then would block a child
    that prints more than the pipe holds (64 KB), and the sweep with it, for ever."""
    gpus = torch.cuda.device_count()
    threads = max(1, (os.cpu_count() or 1) // parallel)
    pending, running, results = list(runs), [], {}
    while pending or running:
        while pending and len(running) < parallel:
            name, seed, folder = pending.pop(0)
            env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
            if gpus:
                busy = {slot for *_, slot in running}
                slot = next(i for i in range(max(gpus, parallel)) if i not in busy)
                env["CUDA_VISIBLE_DEVICES"] = str(slot % gpus)
            else:
                slot = len(running)
            cmd = [sys.executable, "-m", "colabkit", "train", "--experiment", name, "--seed",
                   str(seed), "--run-dir", str(folder), "--data-root", str(data_root), "--quiet",
                   "--json", *cli_args]
            out = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")
            proc = subprocess.Popen(cmd, env=env, stdout=out, text=True)
            running.append((proc, out, folder, slot))
        time.sleep(0.2)
        for item in list(running):
            proc, out, folder, _ = item
            if proc.poll() is None:
                continue
            running.remove(item)
            with out:
                out.seek(0)
                summary = _child_summary(out.read())
            results[folder] = summary or {"run_dir": str(folder),
                                          "status": f"failed (exit {proc.returncode})"}
    return [results[folder] for *_, folder in runs]
