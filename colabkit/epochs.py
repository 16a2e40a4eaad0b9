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
                bar=None, lr_at=None, label_smoothing: float = 0.0
                ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One pass over the training split. Sums stay on the device: no host sync per batch.
    ``lr_at(done)``, if given, sets the learning rate before each step from the fraction
    ``done`` of the epoch's steps behind (a per-step schedule); else the optimizer's stays.
    Returns (loss sum, correct count, images)."""
    model.train()
    device = loader.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen, steps = 0, len(loader)
    for i, (x, y) in enumerate(loader.epoch(epoch)):
        if lr_at is not None:
            for group in optimizer.param_groups:
                group["lr"] = lr_at((i + 1) / steps)
        with _autocast(device, precision):
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
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
def evaluate(model, loader: DeviceLoader, precision: str, predictions: list | None = None,
             tta: bool = False, predictions_tta: list | None = None
             ) -> tuple[torch.Tensor, torch.Tensor, int, torch.Tensor | None]:
    """(loss sum, correct count, images, correct count with flip TTA or None) over the
    loader's split (this rank's share). With ``tta`` each image is also classified by the
    sum of its logits and those of its mirror image (horizontal-flip test-time
    augmentation); loss and the plain count are the unflipped image's alone. Each batch's
    predicted classes are appended to ``predictions`` (and ``predictions_tta``) if given."""
    model.eval()
    device = loader.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    correct_tta = torch.zeros((), device=device, dtype=torch.long) if tta else None
    seen = 0
    for x, y in loader.epoch(0):
        with _autocast(device, precision):
            logits = model(x)
            if tta:
                both = logits.float() + model(x.flip(3)).float()
        pred = logits.argmax(1)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
        correct += (pred == y).sum()
        seen += len(y)
        if predictions is not None:
            predictions.append(pred)
        if tta:
            pred_tta = both.argmax(1)
            correct_tta += (pred_tta == y).sum()
            if predictions_tta is not None:
                predictions_tta.append(pred_tta)
    return loss_sum, correct, seen, correct_tta
