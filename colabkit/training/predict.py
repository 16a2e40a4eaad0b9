"""A trained network's predictions, made one way: as training evaluates it. Evaluation
(``training.epochs.evaluate``), the report's confusion matrix and inspection all run
``batches``: the loader's normalization (the training split's mean and std, on the
device), the run's precision (autocast in fp16 or bf16) and, with flip TTA, the sum of the
logits of each image and of its mirror image. A network run another way (in fp32 after a
bf16 run, or normalized by hand) can predict other classes than those the run logged."""
from __future__ import annotations

from contextlib import nullcontext
from typing import Iterator, NamedTuple

import numpy as np
import torch
from torch import nn

from ..data.loader import DeviceLoader, eval_batch_size
from ..experiments import Experiment


def autocast(device: torch.device, precision: str):
    """Mixed precision as training uses it: nothing in fp32, else autocast to fp16/bf16."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.float16 if precision == "fp16" else torch.bfloat16)


def network_format(device: torch.device) -> torch.memory_format:
    """The memory format a network trains and predicts in: channels_last on CUDA (the
    GPU's tensor cores); on the CPU, oneDNN's channels_last convolution backward can stall
    on narrow layers (seen with torch 2.14), so not there."""
    return torch.channels_last if torch.device(device).type == "cuda" else torch.contiguous_format


class Batch(NamedTuple):
    """One batch's labels and logits: ``logits`` as the network gave them (in autocast's
    dtype), ``logits_tta`` with flip TTA only: the float32 sum of the image's and its
    mirror image's logits."""
    y: torch.Tensor
    logits: torch.Tensor
    logits_tta: torch.Tensor | None


def batches(model: nn.Module, loader: DeviceLoader, precision: str,
            tta: bool = False) -> Iterator[Batch]:
    """The network in eval mode over the loader's split (its batches normalized on the
    device as in training), in ``precision``; with ``tta`` also the mirror images. No
    gradient is kept."""
    model.eval()
    for x, y in loader.epoch(0):  # a test split: the same order in every epoch
        with torch.no_grad(), autocast(x.device, precision):
            logits = model(x)
            both = logits.float() + model(x.flip(3)).float() if tta else None
        yield Batch(y, logits, both)


class Predictions(NamedTuple):
    """A split's predictions, on the host: ``label``, ``pred`` and float32 ``logits``;
    with flip TTA ``pred_tta`` and ``logits_tta`` (the mean of the image's and its mirror
    image's logits), else None."""
    label: np.ndarray
    pred: np.ndarray
    logits: torch.Tensor
    pred_tta: np.ndarray | None
    logits_tta: torch.Tensor | None


def predict(model: nn.Module, loader: DeviceLoader, precision: str, tta: bool = False) -> Predictions:
    """Every image's predicted class over the loader's split, as evaluation makes it."""
    ys, logits, both = [], [], []
    for b in batches(model, loader, precision, tta):
        ys.append(b.y)
        logits.append(b.logits.float())
        if tta:
            both.append(b.logits_tta)
    logits = torch.cat(logits).cpu()
    summed = torch.cat(both).cpu() if tta else None
    return Predictions(torch.cat(ys).cpu().numpy(), logits.argmax(1).numpy(), logits,
                       summed.argmax(1).numpy() if tta else None, summed / 2 if tta else None)


def eval_loader(data, batch_size: int, device, transform=None) -> DeviceLoader:
    """A data set's test split in the batches a run trained at ``batch_size`` evaluated it
    in (``eval_batch_size``, one process), normalized by the training split's mean and std;
    ``transform`` maps each batch in [0, 1] first (inspection's flips and rotations)."""
    return DeviceLoader(data.x_test, data.y_test, eval_batch_size(batch_size), device=device,
                        mean=data.mean, std=data.std, transform=transform)


def trained_network(state: dict, num_classes: int, device) -> nn.Module:
    """A checkpoint's network on ``device`` in eval mode, in training's memory format."""
    model = Experiment.from_dict(state["config"]).network(num_classes)
    model.load_state_dict(state["model"])
    return model.to(device, memory_format=network_format(device)).eval()


def trained_precision(state: dict, environment: dict | None = None, device=None) -> str:
    """The precision to predict a checkpoint's network in: the one it was trained and
    evaluated in (the checkpoint's own: every ``last.pt``, ``best.pt`` after colabkit
    0.4.0; else the run's ``environment.json``, the precision of its last start; else
    fp32). One exception: an fp16 run trained on a GPU (every T4 run) and predicted on the
    CPU runs in fp32 there. The CPU's fp16 kernels are about 50 times slower than fp32
    (1 against 52 images/s for a width-64 ResNet18, measured on one core), and they
    cannot reproduce the GPU's fp16 rounding anyway: agreement with ``predictions.npz``
    holds on the device type the run trained on."""
    environment = environment or {}
    precision = state.get("precision") or environment.get("precision") or "fp32"
    trained_on = str(environment.get("device") or "cuda").split(":")[0]
    if precision == "fp16" and device is not None and torch.device(device).type == "cpu" \
            and trained_on != "cpu":
        return "fp32"
    return precision
