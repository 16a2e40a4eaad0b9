"""One pass over a split on the training device: the training steps of an epoch (mixed
precision, grad scaler) and evaluation, with sums kept on the device and read once."""
from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F

from .loader import DeviceLoader


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
def evaluate(model, loader: DeviceLoader, precision: str,
             predictions: list | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(loss sum, correct count, images) over the loader's split (this rank's share);
    each batch's predicted classes are appended to ``predictions`` if given."""
    model.eval()
    device = loader.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    for x, y in loader.epoch(0):
        with _autocast(device, precision):
            logits = model(x)
        pred = logits.argmax(1)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
        correct += (pred == y).sum()
        seen += len(y)
        if predictions is not None:
            predictions.append(pred)
    return loss_sum, correct, seen
