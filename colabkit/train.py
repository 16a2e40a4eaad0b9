"""The training loop: resumable, interrupt-safe, fast on a T4.

One call, ``train(experiment, run_dir)``, starts a run or continues it. After every
finished epoch the state is checkpointed (atomically, with a checksum) and
``metrics.csv`` is rewritten from the checkpoint's history, so killing the process at
any instant and calling ``train`` again ends exactly as an uninterrupted run would:
each epoch's randomness comes from (seed, epoch) and the learning rate is a pure
function of the epoch.
"""
from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager, nullcontext
from datetime import datetime, timezone

import torch
import torch.nn.functional as F
from torch import nn

from .augment import Augmenter
from .checkpoint import CheckpointWriter, load_latest, rng_state, set_rng_state, to_host
from .data import Dataset, DeviceLoader, load_dataset
from .experiments import Experiment, get_experiment
from .models import build_model
from .runs import RunDir, read_json, write_json, write_metrics
from .runtime import choose_device, choose_precision, environment_record

CHECKPOINT_FORMAT = 1


class ConfigMismatch(ValueError):
    """The run folder holds a run of another configuration."""


# ------------------------------------------------------------ distributed ----

class Dist:
    """Rank and world size; a single process unless started by torchrun."""

    def __init__(self, device: torch.device | None):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank, self.owns_group = 0, False
        self.device = device
        if self.world > 1:
            import torch.distributed as dist

            local = int(os.environ.get("LOCAL_RANK", "0"))
            cuda = torch.cuda.is_available() and (device is None or device.type == "cuda")
            if cuda:
                self.device = torch.device("cuda", local)
                torch.cuda.set_device(self.device)
            else:
                self.device = torch.device("cpu")
            if not dist.is_initialized():
                dist.init_process_group("nccl" if cuda else "gloo")
                self.owns_group = True
            self.rank = dist.get_rank()
        self.device = choose_device(self.device)
        self.main = self.rank == 0

    def sum(self, *values: torch.Tensor) -> list[torch.Tensor]:
        """All-reduced sums (unchanged in a single process)."""
        if self.world == 1:
            return list(values)
        import torch.distributed as dist

        # gloo/nccl reduce float64 and int64 fine; pack to one call
        packed = torch.stack([v.double() for v in values])
        dist.all_reduce(packed)
        return list(packed.unbind())

    def any(self, flag: bool) -> bool:
        """True on every rank if any rank says True (keeps ranks in step)."""
        if self.world == 1:
            return flag
        return bool(self.sum(torch.tensor(float(flag), device=self.device))[0] > 0)

    def broadcast_buffers(self, model: nn.Module) -> None:
        """Rank 0's buffers (BatchNorm running statistics) on every rank."""
        if self.world > 1:
            import torch.distributed as dist

            for b in model.buffers():
                dist.broadcast(b, 0)

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()


# ------------------------------------------------------------------ epochs ----

def _autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.float16 if precision == "fp16" else torch.bfloat16)


def train_epoch(model, loader: DeviceLoader, epoch: int, optimizer, scaler, precision: str,
                bar=None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One pass over the training split. Sums stay on the device: no host sync per batch.
    Returns (loss sum, correct count, images)."""
    model.train()
    device = loader.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    for x, y in loader.epoch(epoch):
        with _autocast(device, precision):
            logits = model(x)
            loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        loss_sum += loss.detach().float() * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
        seen += len(y)
        if bar is not None:
            bar.update(1)
    return loss_sum, correct, seen


@torch.no_grad()
def evaluate(model, loader: DeviceLoader, precision: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(loss sum, correct count, images) over the loader's split (this rank's share)."""
    model.eval()
    device = loader.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    for x, y in loader.epoch(0):
        with _autocast(device, precision):
            logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
        seen += len(y)
    return loss_sum, correct, seen


# ------------------------------------------------------------- interrupts ----

@contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (Colab shutting down, ``kill``, a scheduler) ends training as the stop
    button does: with a checkpoint at the last finished epoch."""
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
    from tqdm.auto import tqdm

    if not leave and not _interactive():
        enabled = False
    return tqdm(total=total, initial=initial, disable=not enabled, desc=desc, leave=leave,
                dynamic_ncols=True, unit="ep" if leave else "batch")


def _results(exp: Experiment, run: RunDir, history: list[dict], status: str,
             world: int = 1) -> dict:
    best = max(history, key=lambda r: (r["test_acc"], -r["epoch"]), default=None)
    return {
        "run_dir": str(run.path), "experiment": exp.name, "model": exp.model,
        "status": status, "epochs_done": len(history), "epochs": exp.epochs,
        "best_acc": best["test_acc"] if best else None,
        "best_epoch": best["epoch"] if best else None,
        "final_acc": history[-1]["test_acc"] if history else None,
        "train_seconds": sum(r["seconds"] for r in history),
        "world_size": world, "history": history,
    }


def _check_config(saved: dict, exp: Experiment, run: RunDir, allow_change: bool) -> None:
    diff = {k: v for k, v in Experiment.from_dict(saved).diff(exp).items() if k != "epochs"}
    if diff and not allow_change:
        lines = "; ".join(f"{k}: saved {a!r}, now {b!r}" for k, (a, b) in diff.items())
        raise ConfigMismatch(
            f"{run.path} holds a run with another configuration ({lines}). Use a new run "
            "folder, or pass allow_config_change=True (--allow-config-change) to continue "
            "this run with the new values.")


def train(experiment: Experiment | str, run_dir: str | os.PathLike, *,
          data: Dataset | None = None, data_root: str | os.PathLike = "data",
          device: str | torch.device | None = None, precision: str = "auto",
          compile: bool = False, max_minutes: float | None = None,
          checkpoint_minutes: float | None = None, progress: bool = True,
          allow_config_change: bool = False, on_epoch=None,
          background_save: bool | None = None) -> dict:
    """Train ``experiment`` in ``run_dir``, resuming it if it holds a checkpoint.

    - ``experiment``: an ``Experiment`` or a preset name (``"basic"``, ``"da"``, ...).
    - ``data``: a loaded ``Dataset``; else ``load_dataset(experiment.dataset, data_root)``.
    - ``precision``: ``"auto"`` (fp16 on a T4, bf16 on Ampere and newer, fp32 on the
      CPU), or ``"fp32"``, ``"fp16"``, ``"bf16"``.
    - ``max_minutes``: stop after the last epoch that fits the budget.
    - ``checkpoint_minutes``: checkpoint every N minutes instead of every epoch (a
      checkpoint is always written at the end and on an interrupt).
    - ``on_epoch(row, history)``: called after each epoch (live plots).

    Returns a dict: status (``finished``, ``budget`` or ``interrupted``), best_acc and
    best_epoch (Table 1), final_acc, epochs_done, history, ...
    """
    started = time.perf_counter()
    exp = get_experiment(experiment) if isinstance(experiment, str) else experiment
    run = RunDir(run_dir)
    dist = Dist(torch.device(device) if device is not None else None)
    dev = dist.device
    prec = choose_precision(dev, precision)
    run.ensure_writable()

    state = load_latest(run.last, map_location="cpu")
    history: list[dict] = []
    if state is not None:
        _check_config(state["config"], exp, run, allow_config_change)
        history = list(state["history"])
    elif run.config.exists():  # started, killed before the first checkpoint
        _check_config(read_json(run.config), exp, run, allow_config_change)
    start = len(history)
    if dist.main:
        write_json(run.config, exp.to_dict())
        write_metrics(run.metrics, history)  # reconcile: the checkpoint's history is the truth
    if start >= exp.epochs:
        dist.close()
        if progress and dist.main:
            print(f"{run.path}: finished ({start} epochs); nothing to train.")
        return _results(exp, run, history[:exp.epochs], "finished", dist.world)

    # ---- data, model, optimizer: all on the device
    if data is None:
        data = load_dataset(exp.dataset, data_root)
    data = data.subset(exp.train_size, exp.test_size, exp.seed)
    torch.manual_seed(exp.seed)
    model = build_model(exp.model, data.num_classes, width=exp.width,
                        attention_kwargs={"kernel_size": exp.spatial_kernel})
    # channels_last feeds the GPU's tensor cores; on the CPU, oneDNN's channels_last
    # convolution backward can stall on narrow layers (seen with torch 2.14), so not there
    model = model.to(dev, memory_format=torch.channels_last if dev.type == "cuda"
                     else torch.contiguous_format)
    optimizer = torch.optim.SGD(model.parameters(), lr=exp.lr, momentum=exp.momentum,
                                weight_decay=exp.weight_decay, nesterov=exp.nesterov)
    scaler = torch.amp.GradScaler(dev.type, enabled=prec == "fp16")
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        if state.get("world_size", 1) != dist.world and dist.main:
            print(f"Note: this run was saved with {state.get('world_size', 1)} process(es) and "
                  f"continues with {dist.world}. The global batch ({exp.batch_size}) and the "
                  "data order are unchanged; only BatchNorm statistics see other slices.")
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    net: nn.Module = model
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    if compile:
        net = torch.compile(net)

    per_rank = exp.batch_size // dist.world  # DeviceLoader refuses a batch that does not divide
    train_loader = DeviceLoader(data.x_train, data.y_train, exp.batch_size, device=dev,
                                mean=data.mean, std=data.std, train=True, seed=exp.seed,
                                augment=Augmenter(exp.augment), rank=dist.rank,
                                world_size=dist.world)
    test_loader = DeviceLoader(data.x_test, data.y_test, max(per_rank * 4, 256) * dist.world,
                               device=dev, mean=data.mean, std=data.std, train=False,
                               rank=dist.rank, world_size=dist.world)

    if dist.main:
        env = environment_record(dev)
        env.update(precision=prec, world_size=dist.world, compile=compile,
                   resumed_from_epoch=start)
        write_json(run.environment, env)

    background = (dev.type == "cuda") if background_save is None else background_save
    writer = CheckpointWriter(background=background)
    best_acc = max((r["test_acc"] for r in history), default=-1.0)
    snapshot, saved_epoch, last_save = None, start, time.perf_counter()
    status = "finished"
    show = progress and dist.main
    epochs_bar = _progress(exp.epochs, start, show, f"{exp.name}")
    epoch_seconds: list[float] = []
    if show and start:
        print(f"Resuming {run.path} at epoch {start + 1}/{exp.epochs}.")

    def commit(snap: dict, rows: list[dict], best_state: dict | None) -> None:
        if best_state is not None:
            writer.submit(best_state, run.best, keep_previous=False)
        writer.submit(snap, run.last, then=lambda: write_metrics(run.metrics, rows))

    try:
        with _sigterm_as_interrupt():
            for epoch in range(start + 1, exp.epochs + 1):
                if max_minutes is not None and epoch_seconds:
                    elapsed = time.perf_counter() - started
                    over = elapsed + max(epoch_seconds[-3:]) > max_minutes * 60
                    if dist.any(over):
                        status = "budget"
                        break
                lr = exp.lr_at(epoch)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                t0 = time.perf_counter()
                with _progress(len(train_loader), 0, show, f"epoch {epoch}", leave=False) as bar:
                    tr_loss, tr_correct, tr_n = train_epoch(net, train_loader, epoch, optimizer,
                                                            scaler, prec, bar)
                tr_loss, tr_correct, tr_n_t = dist.sum(tr_loss, tr_correct,
                                                       torch.tensor(float(tr_n), device=dev))
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                t_train = time.perf_counter() - t0
                # every rank evaluates its share with rank 0's BatchNorm statistics: those
                # of the checkpoint, so the logged accuracy is the saved model's
                dist.broadcast_buffers(model)
                eval_net = model if dist.world > 1 else net
                te_loss, te_correct, te_n = dist.sum(*[torch.as_tensor(v, device=dev, dtype=torch.float64)
                                                       for v in evaluate(eval_net, test_loader, prec)])
                n_tr, n_te = float(tr_n_t), float(te_n)
                row = {
                    "epoch": epoch, "lr": lr,
                    "train_loss": float(tr_loss) / n_tr,
                    "train_acc": 100.0 * float(tr_correct) / n_tr,
                    "test_loss": float(te_loss) / n_te,
                    "test_acc": 100.0 * float(te_correct) / n_te,
                    "seconds": time.perf_counter() - t0,
                    "images_per_s": n_tr / t_train,
                    "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                }
                if not math.isfinite(row["train_loss"]):
                    raise FloatingPointError(f"training loss is {row['train_loss']} at epoch "
                                             f"{epoch}: lower the learning rate, or resume from "
                                             "the last checkpoint with another precision")
                history.append(row)
                epoch_seconds.append(row["seconds"])
                if dist.main:
                    improved = row["test_acc"] > best_acc
                    best_acc = max(best_acc, row["test_acc"])
                    snapshot = to_host({
                        "format": CHECKPOINT_FORMAT, "epoch": epoch, "config": exp.to_dict(),
                        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scaler": scaler.state_dict(), "history": list(history),
                        "rng": rng_state(), "world_size": dist.world, "precision": prec,
                        "classes": list(data.classes),
                    })
                    best_state = None
                    if improved:
                        best_state = {k: snapshot[k] for k in ("format", "epoch", "config",
                                                               "model", "classes")}
                        best_state["test_acc"] = row["test_acc"]
                    due = (checkpoint_minutes is None or epoch == exp.epochs
                           or time.perf_counter() - last_save >= checkpoint_minutes * 60)
                    if due:
                        commit(snapshot, list(history), best_state)
                        saved_epoch, last_save = epoch, time.perf_counter()
                    elif best_state is not None:
                        writer.submit(best_state, run.best, keep_previous=False)
                    epochs_bar.set_postfix(loss=f"{row['train_loss']:.3f}",
                                           train=f"{row['train_acc']:.1f}%",
                                           test=f"{row['test_acc']:.1f}%", lr=f"{lr:g}")
                    epochs_bar.update(1)
                    if on_epoch is not None:
                        on_epoch(row, history)
    except KeyboardInterrupt:
        status = "interrupted"
    finally:
        epochs_bar.close()
        try:
            if dist.main and snapshot is not None and saved_epoch < snapshot["epoch"]:
                writer.wait()
                commit(snapshot, list(snapshot["history"]), None)
                saved_epoch = snapshot["epoch"]
        finally:
            writer.wait()
    done = history[:saved_epoch] if status == "interrupted" else history
    if dist.main and status != "finished":
        why = ("Interrupted" if status == "interrupted"
               else f"Time budget of {max_minutes:g} min reached")
        print(f"{why} after epoch {saved_epoch}/{exp.epochs}: checkpoint saved in {run.path}. "
              "Run the same command (or notebook) again to resume.")
    dist.barrier()
    dist.close()
    return _results(exp, run, done, status, dist.world)
