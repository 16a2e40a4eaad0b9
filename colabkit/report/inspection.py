"""A look inside a trained run, from its folder alone: where CBAM attends, what the
rotation augmentation bought, what each model costs, and its most confident mistakes.

``inspect_run(run_dir, out)`` reads ``best.pt`` (or, if that fails to verify, the newest
checkpoint that does), rebuilds the run's test split, and writes:

- ``attention.png``/``.pdf`` (CBAM models): one test image per class with the spatial
  attention map of the last block of each stage laid over it, and the channel attention
  weights per stage (their spread across channels, and their mean per class), taken with
  forward hooks on the model's own CBAM modules (Woo et al., ECCV 2018);
- ``robustness.csv``/``.png``: test accuracy (plain, without flip TTA) under each
  test-time transform - identity, horizontal and vertical flips, rotations by 30, 60, 90,
  270, 300 and 330 degrees (the training code's ``data.augment.rotate``);
- ``cost.csv``: parameters, forward GFLOPs per image (``torch.utils.flop_counter``), peak
  memory of a training step at batch 128, training and inference images/s, measured as
  training runs on that device (its precision; channels_last on CUDA);
- ``mistakes.png``: the most confident wrong predictions, and ``mistakes.csv``: every
  wrong prediction, most confident first; with flip TTA when the run was evaluated with it.

Every prediction is made as training evaluated the run (``training.predict``): the
run's precision, the training split's normalization on the device, and flip TTA where
the run used it.
"""
from __future__ import annotations

import os
import resource
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch.utils.flop_counter import FlopCounterMode

from ..colab.device import choose_precision
from ..data.augment import rotate
from ..data.loader import DeviceLoader
from ..data.sources import load_dataset
from ..experiments import Experiment
from ..models import CBAM, count_parameters
from ..registry import lookup
from ..rundir.checkpoint import CheckpointError, find_latest, read_checkpoint
from ..rundir.runs import RunDir, read_json
from ..training.epochs import forward_backward, make_optimizer
from ..training.predict import (Predictions, autocast, batches, network_format, predict,
                                eval_loader, trained_network, trained_precision)
from .plotting import save_figure

TRANSFORMS = ("identity", "hflip", "vflip", "rot30", "rot60", "rot90", "rot270", "rot300", "rot330")


class InspectionError(ValueError):
    """The run folder cannot be inspected; the message says why and what to do."""


def load_for_inspection(run_dir: str | os.PathLike) -> tuple[dict, Path]:
    """(checkpoint, its file): ``best.pt``, else the newest checkpoint that verifies,
    with a warning naming why best.pt was not used."""
    run = RunDir(run_dir)
    if not run.path.is_dir():
        raise InspectionError(f"{run.path} does not exist: give a run folder (it holds config.json "
                              "and checkpoints)")
    try:
        return read_checkpoint(run.best), run.best
    except CheckpointError as e:
        best_error = e
    try:
        state, path = find_latest(run.last)
    except CheckpointError as e:
        raise InspectionError(f"{run.path} has no checkpoint that verifies ({e})") from e
    if state is None:
        raise InspectionError(f"{run.path} holds no checkpoint (best.pt, last.pt): train the run "
                              "first, or give another run folder")
    warnings.warn(f"{best_error}; inspecting {path.name} (epoch {state['epoch']}) instead",
                  stacklevel=2)
    return state, path


def test_split(cfg: Experiment, data=None, data_root: str | os.PathLike = "data"):
    """The run's test split, as training saw it (the same seeded subset)."""
    if data is None:
        data = load_dataset(cfg.dataset, data_root, download=False)
    return data.subset(None, cfg.test_size, cfg.seed)


# ------------------------------------------------------------- robustness ----

def transform(x: torch.Tensor, name: str) -> torch.Tensor:
    """A test-time transform of a (B, C, H, W) batch in [0, 1], before normalization
    (rotated corners are black, as in training)."""
    lookup(TRANSFORMS, name, "transform")
    if name == "identity":
        return x
    if name == "hflip":
        return x.flip(3)
    if name == "vflip":
        return x.flip(2)
    return rotate(x, torch.full((x.shape[0],), float(name[3:]), device=x.device))  # rotNN


def under(model, data, device, name: str = "identity", precision: str = "fp32",
          tta: bool = False, batch_size: int = 128) -> Predictions:
    """The test split's predictions under one transform, made as training evaluates
    (``training.predict``): in ``precision``, normalized as training normalizes, with flip
    TTA if asked; ``batch_size`` is the run's training batch (evaluation's batches follow)."""
    lookup(TRANSFORMS, name, "transform")
    return predict(model, eval_loader(data, batch_size, device,
                                      None if name == "identity" else (lambda x: transform(x, name))),
                   precision, tta)


def robustness(model, data, device, precision: str = "fp32", batch_size: int = 128) -> pd.DataFrame:
    """Test accuracy (%, plain predictions) under each transform, identity first."""
    rows = []
    for t in TRANSFORMS:
        p = under(model, data, device, t, precision, batch_size=batch_size)
        rows.append({"transform": t, "accuracy": 100.0 * float((p.pred == p.label).mean())})
    return pd.DataFrame(rows)


def plot_robustness(tables: dict[str, pd.DataFrame]) -> Figure:
    """Grouped bars: one group per transform, one bar per run."""
    fig = Figure(figsize=(max(8, 1.2 * len(TRANSFORMS) + 2), 4), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / max(len(tables), 1)
    for i, (run, t) in enumerate(tables.items()):
        ax.bar(np.arange(len(t)) + i * width, t["accuracy"], width, label=run)
    ax.set_xticks(np.arange(len(TRANSFORMS)) + 0.4 - width / 2, TRANSFORMS)
    ax.set(ylabel="test accuracy (%)", title="Accuracy under test-time flips and rotations")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


# --------------------------------------------------------------- attention ----

class AttentionHooks:
    """Forward hooks on every CBAM's channel and spatial modules: after a forward pass,
    ``channel[i]`` (B, C, 1, 1) and ``spatial[i]`` (B, 1, H, W) of the i-th CBAM block, in
    network order. The model's output is unchanged (hooks only read)."""

    def __init__(self, model: torch.nn.Module):
        self.blocks = [m for m in model.modules() if isinstance(m, CBAM)]
        self.channel: list[torch.Tensor | None] = [None] * len(self.blocks)
        self.spatial: list[torch.Tensor | None] = [None] * len(self.blocks)
        self._handles = []
        for i, block in enumerate(self.blocks):
            self._handles.append(block.channel.register_forward_hook(self._keep(self.channel, i)))
            self._handles.append(block.spatial.register_forward_hook(self._keep(self.spatial, i)))

    @staticmethod
    def _keep(store, i):
        def hook(module, inputs, output):
            store[i] = output.detach()
        return hook

    def remove(self) -> None:
        for h in self._handles:
            h.remove()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def stage_ends(model) -> list[int]:
    """Index (among CBAM blocks) of the last block of each stage."""
    ends, i = [], -1
    for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
        i += sum(1 for m in layer.modules() if isinstance(m, CBAM))
        ends.append(i)
    return ends


def plot_attention(model, data, device, per_class: int = 8, precision: str = "fp32") -> Figure:
    """Spatial maps over one image per class, and channel weights per stage, from one
    forward pass as training evaluates (``training.predict``: ``precision``, normalization)."""
    k = data.num_classes
    y = data.y_test
    first = [int(np.flatnonzero(y == c)[0]) for c in range(k) if (y == c).any()]
    pool = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(k)])
    ends = stage_ends(model)
    loader = DeviceLoader(data.x_test[pool], y[pool], len(pool), device=device, mean=data.mean,
                          std=data.std)
    with AttentionHooks(model) as hooks:
        next(batches(model, loader, precision))
        spatial = [hooks.spatial[i].float().cpu() for i in ends]
        channel = [hooks.channel[i].float().cpu().flatten(1) for i in ends]
    labels = y[pool]
    rows = len(first)
    # rows of (image, stage 1-4 spatial maps); a last row of channel weights: the mean
    # weight per class for each stage (channels sorted by their mean), and their spread
    fig = Figure(figsize=(11, 1.9 * rows + 2.8), layout="constrained")
    grid = fig.add_gridspec(rows + 1, 5, height_ratios=[1] * rows + [1.8])
    for r, idx in enumerate(first):
        j = int(np.flatnonzero(pool == idx)[0])
        img = data.x_test[idx]
        ax = fig.add_subplot(grid[r, 0])
        ax.imshow(img)
        ax.set_axis_off()
        ax.set_title(data.classes[y[idx]], fontsize=8)
        for s in range(4):
            ax = fig.add_subplot(grid[r, s + 1])
            m = F.interpolate(spatial[s][j:j + 1], size=img.shape[:2], mode="bilinear",
                              align_corners=False)[0, 0].numpy()
            ax.imshow(img)
            ax.imshow(m, cmap="jet", alpha=0.45)  # each map on its own range: where, not how much
            ax.set_axis_off()
            ax.set_title(f"{m.min():.2f}-{m.max():.2f}", fontsize=6)
            if r == 0:
                ax.set_title(f"stage {s + 1} ({spatial[s].shape[-1]}x{spatial[s].shape[-1]})\n"
                             f"{m.min():.2f}-{m.max():.2f}", fontsize=7)
    classes = np.unique(labels)
    for s in range(4):
        ax = fig.add_subplot(grid[rows, s])
        per = torch.stack([channel[s][torch.from_numpy(labels == c)].mean(0) for c in classes])
        ax.imshow(per[:, per.mean(0).argsort()].numpy(), aspect="auto", cmap="viridis",
                  interpolation="nearest")
        ax.set_title(f"stage {s + 1}: channel weight by class\n"
                     f"({float(per.min()):.2f} dark - {float(per.max()):.2f} bright)", fontsize=7)
        ax.set_xlabel("channel (sorted by mean)", fontsize=7)
        ax.set_yticks(range(len(classes)), [data.classes[c] for c in classes], fontsize=6)
    ax = fig.add_subplot(grid[rows, 4])
    ax.boxplot([c.flatten().numpy() for c in channel])  # (no labels=: renamed in matplotlib 3.9)
    ax.set_xticks(range(1, 5), [str(s) for s in range(1, 5)])
    ax.set_title("channel weights per stage", fontsize=8)
    ax.set(ylim=(0, 1), xlabel="stage")
    fig.suptitle("CBAM attention: spatial maps of each stage's last block (blue low, red high; "
                 "range above each), channel weights")
    return fig


# -------------------------------------------------------------------- cost ----

def flops_per_image(model, device, size: int = 32) -> float:
    """Forward FLOPs of one image, counted by ``torch.utils.flop_counter``."""
    x = torch.zeros(1, 3, size, size, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(x)
    return float(counter.get_total_flops())


def cost(cfg: Experiment, num_classes: int, device, batch: int = 128, steps: int = 3,
         precision: str = "auto") -> dict:
    """Parameters, GFLOPs per image, peak memory of a training step at ``batch`` and
    measured training and inference images/s on ``device``, in the configuration training
    uses there: its precision (``"auto"``: as ``train`` chooses; autocast, and a GradScaler
    in fp16), channels_last on CUDA, its optimizer, the same step code."""
    dev = torch.device(device)
    prec = choose_precision(dev, precision)
    fmt = network_format(dev)  # as train
    model = cfg.network(num_classes).to(dev, memory_format=fmt)
    out = {"model": cfg.model, "width": cfg.width, "parameters": count_parameters(model),
           "gflops_per_image": flops_per_image(model, dev) / 1e9, "device": str(dev),
           "precision": prec, "channels_last": fmt == torch.channels_last}
    opt = make_optimizer(model, lr=0.01, momentum=0.9, weight_decay=5e-4, nesterov=False,
                         precision=prec)
    scaler = torch.amp.GradScaler(dev.type, enabled=prec == "fp16")
    x = torch.randn(batch, 3, 32, 32, device=dev).contiguous(memory_format=fmt)
    y = torch.randint(0, num_classes, (batch,), device=dev)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    model.train()
    for i in range(steps + 1):  # the first step warms up
        if i == 1:
            sync()
            t = time.perf_counter()
        forward_backward(model, x, y, opt, scaler, prec)
        scaler.step(opt)
        scaler.update()
    sync()
    out["train_images_per_s"] = batch * steps / (time.perf_counter() - t)
    if dev.type == "cuda":
        out["train_step_peak_mb"] = torch.cuda.max_memory_allocated(dev) / 2 ** 20
    else:
        out["train_step_peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        out["note"] = "CPU: peak resident memory of the whole process"
    model.eval()
    with torch.no_grad(), autocast(dev, prec):
        model(x)
        sync()
        t = time.perf_counter()
        for _ in range(steps):
            model(x)
        sync()
    out["inference_images_per_s"] = batch * steps / (time.perf_counter() - t)
    return out


# ---------------------------------------------------------------- mistakes ----

def mistakes(p: Predictions, tta: bool = False) -> pd.DataFrame:
    """Every wrong prediction, most confident first: the test image's index in the split,
    its true and predicted class, and the softmax probability of the prediction; from the
    flip TTA predictions with ``tta`` (the mean of the image's and its mirror's logits)."""
    logits, pred = (p.logits_tta, p.pred_tta) if tta else (p.logits, p.pred)
    conf = logits.softmax(1).max(1).values.numpy()
    wrong = np.flatnonzero(pred != p.label)
    wrong = wrong[np.argsort(-conf[wrong], kind="stable")]
    return pd.DataFrame({"image": wrong, "true": p.label[wrong], "predicted": pred[wrong],
                         "confidence": conf[wrong]})


def plot_mistakes(table: pd.DataFrame, data, n: int = 16, tta: bool = False) -> Figure:
    """The ``n`` wrong predictions made with the highest confidence (``mistakes``)."""
    top = table.head(n)
    cols = 8
    rows = max(1, -(-len(top) // cols))
    fig = Figure(figsize=(1.6 * cols, 1.9 * rows + 0.4), layout="constrained")
    for k, r in enumerate(top.itertuples()):
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.imshow(data.x_test[r.image])
        ax.set_axis_off()
        ax.set_title(f"{data.classes[r.true]}\n→ {data.classes[r.predicted]} "
                     f"{100 * r.confidence:.0f}%", fontsize=7)
    fig.suptitle("Most confident mistakes (true → predicted, confidence)"
                 + (", with flip TTA" if tta else ""))
    return fig


# ------------------------------------------------------------------ driver ----

def inspect_run(run_dir: str | os.PathLike, out: str | os.PathLike, *, device: str = "cpu",
                images: int | None = None, data=None, data_root: str | os.PathLike = "data",
                cost_batch: int = 128) -> dict[str, list[Path]]:
    """Inspect one run folder into ``out`` (see the module's docstring); ``images``
    limits the test images used (a seeded subset of the run's test split)."""
    state, path = load_for_inspection(run_dir)
    cfg = Experiment.from_dict(state["config"])
    data = test_split(cfg, data, data_root)
    if images is not None and images < len(data.y_test):
        data = data.subset(None, images, cfg.seed)
    dev = torch.device(device)
    model = trained_network(state, data.num_classes, dev)
    precision = trained_precision(state, read_json(RunDir(run_dir).environment, {}), dev)
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise InspectionError(f"--out {out} is a file: give a folder")
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[Path]] = {}
    table = robustness(model, data, dev, precision, cfg.batch_size)
    table.insert(0, "run", RunDir(run_dir).name)
    table.insert(1, "checkpoint", f"{path.name} (epoch {state['epoch']})")
    table.to_csv(out / "robustness.csv", index=False)
    written["robustness"] = [out / "robustness.csv"] + save_figure(
        plot_robustness({RunDir(run_dir).name: table}), out, "robustness")
    if any(isinstance(m, CBAM) for m in model.modules()):
        written["attention"] = save_figure(plot_attention(model, data, dev, precision=precision),
                                           out, "attention")
    wrong = mistakes(under(model, data, dev, "identity", precision, cfg.tta, cfg.batch_size), cfg.tta)
    wrong.to_csv(out / "mistakes.csv", index=False)
    written["mistakes"] = save_figure(plot_mistakes(wrong, data, tta=cfg.tta), out,
                                      "mistakes") + [out / "mistakes.csv"]
    pd.DataFrame([cost(cfg, data.num_classes, dev, batch=cost_batch)]).to_csv(out / "cost.csv", index=False)
    written["cost"] = [out / "cost.csv"]
    return written
