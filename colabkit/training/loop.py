"""The training loop: resumable, interrupt-safe, fast on a T4.

One call, ``train(experiment, run_dir)``, starts a run or continues it. After every
finished epoch the state is checkpointed (atomically, with a checksum) and
``metrics.csv`` is rewritten from the checkpoint's history, so killing the process at
any instant and calling ``train`` again continues from the last finished epoch with the
weights, momentum and grad-scaler state it had: each epoch's randomness comes from (seed,
epoch) and the learning rate is a pure function of the epoch, so no random-number state
needs saving. On the CPU the resumed run ends exactly as an uninterrupted one (tested,
bit for bit). On a GPU that holds only where its kernels are deterministic: under
``torch.use_deterministic_algorithms(True)``, which also turns cuDNN's autotuning off,
on the same GPU and software (tests/test_cuda.py checks it; not yet run on a GPU); by
default the autotuned kernels make it close, not equal. Where the files live
(a local working copy mirrored to Google Drive, the lease) is ``colab.storage``'s concern.
"""
from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import NamedTuple

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from ..colab.device import choose_precision, compile_note, environment_record
from ..colab.lease import LeaseLost
from ..colab.storage import RunStorage
from ..data.augment import Augmenter
from ..data.loader import Loaders, run_loaders
from ..data.sources import Dataset, load_dataset
from ..experiments import Experiment, get_experiment
from ..rundir.checkpoint import to_host
from ..rundir.events import INSTALL, available as events_available
from ..rundir.runs import selection_key, write_json
from ..version import colabkit_version
from .distributed import Dist
from .epochs import CompiledOrEager, evaluate, make_optimizer, match_precision, train_epoch
from .predict import network_format
from .resume import CHECKPOINT_FORMAT, ConfigMismatch, check_config, version_note
from .saver import Saver


@contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (Colab shutting down, ``kill``, torchrun ending its workers, a scheduler)
    ends training as the stop button does: with a checkpoint at the last finished epoch,
    the last mirror and the lease released. Also usable as a decorator."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _interactive() -> bool:
    """A terminal or a notebook, where a redrawn bar is readable (not a log file)."""
    if sys.stderr is not None and sys.stderr.isatty():
        return True
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    return shell is not None and type(shell).__name__ != "TerminalInteractiveShell"


def _progress(total: int, initial: int, enabled: bool, desc: str, leave: bool = True):
    """An epoch bar (``leave=True``) or a batch bar; batch bars only where they redraw."""
    if not leave and not _interactive():
        enabled = False
    return tqdm(total=total, initial=initial, disable=not enabled, desc=desc, leave=leave,
                dynamic_ncols=True, unit="ep" if leave else "batch")


def _results(exp: Experiment, run_dir, history: list[dict], status: str,
             world: int = 1) -> dict:
    key = selection_key([r.get("val_acc") for r in history], exp.tta)
    test = key.accuracy("test")
    best = max(history, key=lambda r: (r[key.column], -r["epoch"]), default=None)
    return {
        "run_dir": str(run_dir), "experiment": exp.name, "model": exp.model,
        "recipe": exp.recipe, "status": status, "epochs_done": len(history), "epochs": exp.epochs,
        "selected_on": key.split, "accuracy": "flip TTA" if exp.tta else "plain",
        "best_acc": best[test] if best else None,  # test accuracy at the best epoch
        "best_val_acc": best.get(key.accuracy("val")) if best else None,
        "best_epoch": best["epoch"] if best else None,
        "final_acc": history[-1][test] if history else None,
        "train_seconds": sum(r["seconds"] for r in history),
        "world_size": world, "history": history,
    }


def duration(seconds: float) -> str:
    """A time span as people say it: '40 s', '12 min', '2.5 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def over_budget(elapsed_s: float, epoch_seconds: list[float], max_minutes: float | None,
                reserve_s: float = 0.0) -> bool:
    """Whether one more epoch (the longest of the last three) would end past the budget,
    with ``reserve_s`` kept for the stop (Drive's flush), at most a quarter of the budget."""
    if max_minutes is None or not epoch_seconds:
        return False
    reserve_s = min(reserve_s, max_minutes * 15)
    return elapsed_s + max(epoch_seconds[-3:]) + reserve_s > max_minutes * 60


def time_estimate(epochs_left: int, epoch_seconds: float, minutes_used: float,
                  max_minutes: float | None) -> str:
    """What the first measured epoch says of the rest of the run, and of the budget."""
    text = (f"Estimate from this epoch ({epoch_seconds:.0f} s, warm-up included): "
            f"{duration(epochs_left * epoch_seconds)} for the {epochs_left} epochs left")
    if max_minutes is None:
        return text + "."
    left = max(0.0, max_minutes - minutes_used)
    fit = min(epochs_left, int(left * 60 // epoch_seconds)) if epoch_seconds > 0 else epochs_left
    if fit >= epochs_left:
        return text + f": they fit the budget of {max_minutes:g} min."
    return (text + f": the budget of {max_minutes:g} min covers about {fit} of them; run "
            "again in the next session to continue.")


class Parts(NamedTuple):
    """The parts a run trains with: ``model`` (the weights saved), ``net`` (what steps: the
    model, wrapped by DDP and/or compiled), its optimizer and grad scaler, and the loaders."""
    model: nn.Module
    net: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    loaders: Loaders


def _setup(exp: Experiment, num_classes: int, loaders: Loaders, dist: Dist, prec: str,
           compile: bool) -> Parts:
    """Model, optimizer, grad scaler and the network to step (DDP / compiled)."""
    dev = dist.device
    torch.manual_seed(exp.seed)
    model = exp.network(num_classes).to(dev, memory_format=network_format(dev))
    optimizer = make_optimizer(model, lr=exp.lr, momentum=exp.momentum, precision=prec,
                               weight_decay=exp.weight_decay, nesterov=exp.nesterov)
    scaler = torch.amp.GradScaler(dev.type, enabled=prec == "fp16")
    if dev.type == "cuda":  # autotuned kernels, unless asked for deterministic ones
        torch.backends.cudnn.benchmark = not torch.are_deterministic_algorithms_enabled()
    net: nn.Module = model
    if dist.world > 1:
        net = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    if compile:
        if dist.main and (note := compile_note(dev)):
            print(note)
        net = CompiledOrEager(net)
    return Parts(model, net, optimizer, scaler, loaders)


def _resume(parts: Parts, state: dict, fixed: dict, run_dir, dist: Dist) -> None:
    """Load a checkpoint into the run's parts, saying what differs from the run that saved it
    (``fixed``: what this run's checkpoints will say of it, ``_fixed``)."""
    classes, prec, version = fixed["classes"], fixed["precision"], fixed["colabkit"]
    if list(state.get("classes", classes)) != list(classes):
        raise ConfigMismatch(f"{run_dir} was trained on the classes {state['classes']}, not "
                             f"{list(classes)}: train in a new run folder.")
    try:
        parts.model.load_state_dict(state["model"])
        parts.optimizer.load_state_dict(state["optimizer"])
        match_precision(parts.optimizer, prec)
        if state.get("scaler"):
            parts.scaler.load_state_dict(state["scaler"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise ConfigMismatch(f"the checkpoint in {run_dir} does not fit this model "
                             f"({str(e).splitlines()[0][:200]}): train in a new run folder.") from e
    if not dist.main:
        return
    if changed := version_note(state, version):
        warnings.warn(changed, stacklevel=3)
    if state.get("precision", prec) != prec:
        print(f"Note: this run was trained in {state['precision']} and continues in "
              f"{prec} (another GPU or --precision): the epochs to come round "
              "differently from an uninterrupted run's. To keep "
              f"{state['precision']}, pass precision='{state['precision']}' "
              f"(--precision {state['precision']}).")
    if state.get("world_size", 1) != dist.world:
        print(f"Note: this run was saved with {state.get('world_size', 1)} process(es) "
              f"and continues with {dist.world}. The global batch, the data order and the "
              "augmentation are unchanged; only BatchNorm statistics see other slices.")


def train_and_evaluate(epoch: int, exp: Experiment, parts: Parts, prec: str, dist: Dist,
                       show: bool) -> tuple[dict, dict[str, torch.Tensor]]:
    """Train one epoch and evaluate; the metrics.csv row (sums across DDP ranks) and the
    test predictions, ``pred`` and with TTA ``pred_tta`` (one process only)."""
    dev = dist.device
    lr = exp.lr_at(epoch)
    for group in parts.optimizer.param_groups:
        group["lr"] = lr
    per_step = None if exp.lr_schedule == "step" else (lambda done: exp.lr_at(epoch, done))
    t0 = time.perf_counter()
    with _progress(len(parts.loaders.train), 0, show, f"epoch {epoch}", leave=False) as bar:
        sums = train_epoch(parts.net, parts.loaders.train, epoch, parts.optimizer, parts.scaler, prec,
                           bar, per_step, exp.label_smoothing)
    tr_loss, tr_correct, tr_n = dist.sum(sums.loss, sums.correct,
                                         torch.tensor(float(sums.seen), device=dev))
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t_train = time.perf_counter() - t0
    # every rank evaluates its share with rank 0's BatchNorm statistics: those of the
    # checkpoint, so the logged accuracy is the saved model's
    dist.broadcast_buffers(parts.model)
    eval_net = parts.model if dist.world > 1 else parts.net
    preds = {"pred": [], "pred_tta": []} if dist.world == 1 else None

    def split(loader, keep=None):
        """(loss, accuracy %, accuracy % with flip TTA or None)."""
        s = evaluate(eval_net, loader, prec, keep and keep["pred"], exp.tta, keep and keep["pred_tta"])
        sums = [s.loss, s.correct, s.seen] + ([s.correct_tta] if exp.tta else [])
        sums = [float(v) for v in dist.sum(*[torch.as_tensor(v, device=dev, dtype=torch.float64) for v in sums])]
        return sums[0] / sums[2], 100.0 * sums[1] / sums[2], 100.0 * sums[3] / sums[2] if exp.tta else None

    test_loss, test_acc, test_tta = split(parts.loaders.test, preds)
    val_loss, val_acc, val_tta = split(parts.loaders.val) if parts.loaders.val is not None else (None, None, None)
    n_tr = float(tr_n)
    row = {"epoch": epoch, "lr": lr, "train_loss": float(tr_loss) / n_tr,
           "train_acc": 100.0 * float(tr_correct) / n_tr, "test_loss": test_loss,
           "test_acc": test_acc, "val_loss": val_loss, "val_acc": val_acc,
           "seconds": time.perf_counter() - t0, "images_per_s": n_tr / t_train,
           "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if exp.tta:  # the report recipe's rows stay exactly as they were
        row.update(test_acc_tta=test_tta, val_acc_tta=val_tta)
    if not math.isfinite(row["train_loss"]):
        raise FloatingPointError(f"training loss is {row['train_loss']} at epoch {epoch}: lower "
                                 "the learning rate, or resume from the last checkpoint with "
                                 "another precision")
    return row, ({k: torch.cat(v).cpu() for k, v in preds.items() if v} if preds else {})


def _record(storage: RunStorage, exp: Experiment, data: Dataset, model, history, **env) -> None:
    """config.json, metrics.csv and TensorBoard's event file (from the checkpoint's history:
    the truth) and environment.json in the working copy (one line if tensorboard is not
    installed), and a warning if a disk lacks the space."""
    write_json(storage.work.config, exp.to_dict())
    storage.reconcile(history)  # metrics.csv, and TensorBoard's file when tensorboard is there
    if not events_available():
        print(INSTALL)
    record = environment_record(next(model.parameters()).device)
    record.update(env, train_images=len(data.y_train), test_images=len(data.y_test),
                  val_images=None if data.y_val is None else len(data.y_val))
    write_json(storage.work.environment, record)
    size = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    storage.check_space(2 * size, size)  # weights + SGD momentum; best.pt: weights


def _fixed(data, dist: Dist, prec: str, changes) -> dict:
    """What every checkpoint of this call says of the run beside its epoch's state: the
    classes, how it is trained (processes, precision), the colabkit that trains it and the
    schedule changes allowed. Built once; ``_resume`` compares a checkpoint's with it."""
    return {"world_size": dist.world, "precision": prec, "classes": list(data.classes),
            "colabkit": colabkit_version(), "schedule_changes": changes}


def _snapshot(epoch: int, exp: Experiment, parts: Parts, history, fixed: dict) -> dict:
    """The checkpoint of the run after ``epoch``, on the host."""
    return to_host({
        "format": CHECKPOINT_FORMAT, "epoch": epoch, "config": exp.to_dict(),
        "model": parts.model.state_dict(), "optimizer": parts.optimizer.state_dict(),
        "scaler": parts.scaler.state_dict(), "history": list(history), **fixed})


def _open(storage: RunStorage, dist: Dist) -> dict | None:
    """Rank 0 takes the run folder's lease and reads its checkpoint; the others wait."""
    try:
        state = storage.open() if dist.main else None
    except Exception as e:  # a lease held elsewhere: the other ranks wait at the barrier
        dist.fail(e)
        raise
    dist.barrier()
    return state


def _shown(bar, row: dict, epoch: int, start: int, exp: Experiment, started: float,
           max_minutes: float | None) -> None:
    """The epoch bar moves on; after this call's first epoch, what it says of the rest."""
    if epoch == start + 1 and epoch < exp.epochs and not bar.disable:
        bar.write(time_estimate(exp.epochs - epoch, row["seconds"],
                                (time.perf_counter() - started) / 60, max_minutes))
    bar.set_postfix(loss=f"{row['train_loss']:.3f}", train=f"{row['train_acc']:.1f}%",
                    test=f"{row['test_acc']:.1f}%", lr=f"{row['lr']:g}")
    bar.update(1)


def _finished(exp: Experiment, storage: RunStorage, history, dist: Dist, show: bool) -> dict:
    """A run that has trained all its epochs: its metrics.csv made to agree with the
    checkpoint, nothing trained."""
    if dist.main:
        storage.reconcile(history)
        if show:
            print(f"{storage.home.path}: finished ({len(history)} epochs); nothing to train.")
    dist.close()
    return _results(exp, storage.home.path, history[:exp.epochs], "finished", dist.world)


def _close(dist: Dist, saver: Saver | None, storage: RunStorage, lost: bool, flush: bool) -> str:
    """At every stop, on rank 0: the last checkpoint written (after a takeover only the one
    in flight: the folder is another trainer's now), then the storage closed (the last
    mirror, the lease released, Drive flushed). Returns the storage's note."""
    if not dist.main:
        return ""
    try:
        if saver is not None:
            saver.writer.wait() if lost else saver.close()
    finally:
        note = "" if lost else storage.close(flush=flush and saver is not None)
    return note


def _say_stopped(status: str, saved_epoch: int, exp: Experiment, where, max_minutes,
                 note: str) -> None:
    """What a stop before the last epoch left and what to run; then the storage's note."""
    if status != "finished":
        why = "Interrupted" if status == "interrupted" else f"Time budget of {max_minutes:g} min reached"
        print(f"{why} before the first epoch finished: nothing was saved yet in {where}. Run the "
              "same command (or notebook) again to start." if saved_epoch == 0 else
              f"{why} after epoch {saved_epoch}/{exp.epochs}: checkpoint saved in {where}. Run "
              "the same command (or notebook) again to resume.")
    if note:
        print(note)


@_sigterm_as_interrupt()  # from the lease's start to its release, not only the epochs
def train(experiment: Experiment | str, run_dir: str | os.PathLike, *,
          data: Dataset | None = None, data_root: str | os.PathLike = "data",
          device: str | torch.device | None = None, precision: str = "auto",
          compile: bool = False, max_minutes: float | None = None,
          checkpoint_minutes: float | None = None, mirror_minutes: float = 10.0,
          takeover: bool = False, progress: bool = True, allow_config_change: bool = False,
          on_epoch=None, background_save: bool | None = None, flush: bool = True) -> dict:
    """Train ``experiment`` in ``run_dir``, resuming it if it holds a checkpoint.

    - ``experiment``: an ``Experiment`` or a preset name (``"basic"``, ``"da"``, ...).
    - ``data``: a loaded ``Dataset``; else ``load_dataset(experiment.dataset, data_root)``.
    - ``precision``: ``"auto"`` (fp16 on a T4, bf16 on Ampere and newer, fp32 on the
      CPU), or ``"fp32"``, ``"fp16"``, ``"bf16"``.
    - ``max_minutes``: stop after the last epoch that fits the budget, counted from
      this call, leaving time for the stop's flush of Drive (in Colab).
    - ``checkpoint_minutes``: checkpoint every N minutes instead of every epoch (a
      checkpoint is always written at the end and on an interrupt).
    - ``mirror_minutes``: a run folder on Google Drive is trained in a local working copy
      and copied to Drive every N minutes (0: every checkpoint), and at every stop.
    - ``takeover``: train although another trainer's lease holds the folder (that
      trainer stops at its next epoch).
    - ``on_epoch(row, history)``: called after each epoch (live plots).
    - ``flush``: at the end, make Drive upload now (in Colab: flush_and_unmount, remount,
      each with a timeout; a failure is a warning). A queue passes False and flushes once.

    Returns a dict: status (``finished``, ``budget`` or ``interrupted``), best_acc and
    best_epoch (Table 1), final_acc, epochs_done, history, ...
    """
    started = time.perf_counter()
    exp = get_experiment(experiment) if isinstance(experiment, str) else experiment
    dist = Dist(torch.device(device) if device is not None else None)
    prec = choose_precision(dist.device, precision)
    storage = RunStorage(run_dir, mirror_minutes=mirror_minutes, takeover=takeover)
    where, saver, status, lost = storage.home.path, None, "finished", False
    state = _open(storage, dist)
    # a rank ended by another's error (the watcher) closes as a stop does: mirror, release
    dist.on_kill = lambda: _close(dist, saver, storage, lost, flush)
    try:
        state = state if dist.main else storage.load()  # the others read it once it is safe
        changes = check_config(state, exp, storage.home, allow_config_change, dist.main)
        history: list[dict] = list(state["history"]) if state is not None else []
        start, show = len(history), progress and dist.main
        if start >= exp.epochs:
            return _finished(exp, storage, history, dist, show)
        # the run's splits, and its loaders on the device (the data wing's): after this the
        # loop reads only the classes and the test labels of the data
        data = (data or load_dataset(exp.dataset, data_root)).for_run(
            exp.val_size, exp.train_size, exp.test_size, exp.seed)
        loaders = run_loaders(data, exp.batch_size, seed=exp.seed, augment=Augmenter(exp.augment),
                              device=dist.device, rank=dist.rank, world_size=dist.world)
        parts = _setup(exp, data.num_classes, loaders, dist, prec, compile)
        fixed = _fixed(data, dist, prec, changes)
        if state is not None:
            _resume(parts, state, fixed, where, dist)
        if dist.main:  # the configuration has proven itself: record it
            _record(storage, exp, data, parts.model, history, precision=prec, world_size=dist.world,
                    compile=compile, resumed_from_epoch=start, schedule_changes=changes)
        saver = Saver(storage, dist.device.type == "cuda" if background_save is None else background_save,
                      checkpoint_minutes, history, start, data.y_test, exp.tta)
        # the budget's estimate of an epoch: this call's epochs, or the run's last ones
        epoch_seconds = [r["seconds"] for r in history[-3:] if r.get("seconds")]
        reserve = storage.stop_seconds(flush)  # the stop at the budget flushes Drive
        with _progress(exp.epochs, start, show, exp.name) as bar:
            if show and start:
                bar.write(f"Resuming {where} at epoch {start + 1}/{exp.epochs}.")
            for epoch in range(start + 1, exp.epochs + 1):
                # stop before an epoch that would end past the budget: every rank at once
                if dist.any(over_budget(time.perf_counter() - started, epoch_seconds,
                                        max_minutes, reserve)):
                    status = "budget"
                    break
                row, predictions = train_and_evaluate(epoch, exp, parts, prec, dist, show)
                history.append(row)
                epoch_seconds.append(row["seconds"])
                if not dist.main:  # rank 0 alone saves and reports
                    continue
                storage.heartbeat(row["seconds"])  # the lease: this trainer is alive
                # checkpoint (on the cadence asked; the writer's thread on a GPU)
                saver.epoch_done(_snapshot(epoch, exp, parts, history, fixed), row,
                                 final=epoch == exp.epochs, predictions=predictions)
                _shown(bar, row, epoch, start, exp, started, max_minutes)
                if on_epoch is not None:
                    on_epoch(row, history)
    except KeyboardInterrupt:
        if saver is None:  # before training started: nothing to save
            raise
        status = "interrupted"
    except Exception as e:
        lost = isinstance(e, LeaseLost)  # another trainer writes the folder now: hands off
        dist.fail(e)  # every other rank stops now, not at the backend's timeout
        raise
    finally:
        note = _close(dist, saver, storage, lost, flush)
    if dist.main:
        _say_stopped(status, saver.saved_epoch, exp, where, max_minutes, note)
    dist.barrier()
    dist.close()
    done = history[:saver.saved_epoch] if status == "interrupted" else history
    return _results(exp, where, done, status, dist.world)
