"""One pass over a split on the training device: the training steps of an epoch (mixed
precision, grad scaler) and evaluation, with sums kept on the device and read once."""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..data.loader import DeviceLoader
from .predict import autocast, batches


def make_optimizer(model: torch.nn.Module, *, lr: float, momentum: float, weight_decay: float,
                   nesterov: bool, precision: str) -> torch.optim.SGD:
    """The training SGD. In fp16 it is the fused one: it takes GradScaler's scale and
    found-inf flag on the device, where any other makes the scaler read found-inf back to
    the host (``.item()``), a sync every step (fused SGD: torch 2.4 and later, CPU and
    CUDA; Colab has 2.11). In fp32 and bf16 there is no scaler and no read: the default
    implementation stays, whose numbers earlier runs were trained with (the fused kernel
    rounds differently). The learning rate stays a Python float set before each step."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum,
                                weight_decay=weight_decay, nesterov=nesterov,
                                fused=True if precision == "fp16" else None)
    if precision == "fp16" and momentum:
        # fused SGD makes its momentum buffers with empty_like and fills them at the first
        # step, but a first step the scaler skips (an overflow, common at its initial scale)
        # leaves them uninitialized for the next one to read (torch 2.14, seen on the CPU).
        # Zeros make the first real step's buffer momentum * 0 + grad: grad, bit for bit.
        for p in model.parameters():
            optimizer.state[p]["momentum_buffer"] = torch.zeros_like(p)
    return optimizer


def match_precision(optimizer: torch.optim.Optimizer, precision: str) -> None:
    """After ``load_state_dict``: the saved param groups replace ours, with the saved
    implementation flags; a checkpoint of an unfused optimizer (an fp32 or bf16 run, or
    colabkit 0.x) would bring ``fused=None`` to an fp16 step, where GradScaler's scale
    reaches a step that refuses it. The state (momentum buffers) is the same for both."""
    for group in optimizer.param_groups:
        group["fused"], group["foreach"] = (True if precision == "fp16" else None), None


class CompiledOrEager(nn.Module):
    """``torch.compile(module)``, or ``module`` itself for the rest of the run once
    compiling or running the compiled code raises: one line names the error, and the step
    is taken again eagerly, so a run never stops for it. Since Triton 3.3, GPUs below
    sm_80 (the T4 is sm_75) are not supported: compiling there may work, fail at once, or
    fail at a later recompile (another shape, eval mode) or at the first backward."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module  # a submodule: train() and eval() reach it
        self.__dict__["compiled"] = torch.compile(module)  # shares module's parameters
        self.error: str | None = None

    def forward(self, *args, **kwargs):
        if self.error is None:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - any failure of the compiler
                self.fall_back(e)
        return self.module(*args, **kwargs)

    def fall_back(self, e: BaseException) -> None:
        """Go on eagerly from now on, saying why in one line."""
        lines = str(e).strip().splitlines() or [""]
        self.error = f"{type(e).__name__}: {lines[0][:300]}"
        print(f"torch.compile failed ({self.error}); training goes on eagerly.", flush=True)


def forward_backward(model, x, y, optimizer, scaler, precision: str,
                     label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """A training step up to the gradients, as training takes it: autocast in
    ``precision``, loss scaled by the GradScaler. Returns (logits, loss)."""
    with autocast(x.device, precision):
        logits = model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    optimizer.zero_grad(set_to_none=True)  # here: a retried step starts from no gradient
    scaler.scale(loss).backward()
    return logits, loss


class Sums(NamedTuple):
    """A training epoch's sums over the images one process saw, on the device."""
    loss: torch.Tensor
    correct: torch.Tensor
    seen: int


class EvalSums(NamedTuple):
    """An evaluation's sums over one process's share of a split, on the device."""
    loss: torch.Tensor
    correct: torch.Tensor
    seen: int
    correct_tta: torch.Tensor | None  # with flip TTA only


def train_epoch(model, loader: DeviceLoader, epoch: int, optimizer, scaler, precision: str,
                bar=None, lr_at=None, label_smoothing: float = 0.0) -> Sums:
    """One pass over the training split. Sums stay on the device: no host sync per batch.
    ``lr_at(done)``, if given, sets the learning rate before each step from the fraction
    ``done`` of the epoch's steps behind (a per-step schedule); else the optimizer's stays.
    Returns the loss sum, correct count and images (``Sums``)."""
    model.train()
    device = loader.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen, steps = 0, len(loader)
    for i, (x, y) in enumerate(loader.epoch(epoch)):
        if lr_at is not None:
            for group in optimizer.param_groups:
                group["lr"] = lr_at((i + 1) / steps)
        try:
            logits, loss = forward_backward(model, x, y, optimizer, scaler, precision,
                                             label_smoothing)
        except Exception as e:  # noqa: BLE001 - a compiled backward that fails: once, eagerly
            if not isinstance(model, CompiledOrEager) or model.error is not None:
                raise
            model.fall_back(e)
            logits, loss = forward_backward(model, x, y, optimizer, scaler, precision,
                                             label_smoothing)
        scaler.step(optimizer)
        scaler.update()
        loss_sum += loss.detach().float() * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
        seen += len(y)
        if bar is not None:
            bar.update(1)
    return Sums(loss_sum, correct, seen)


@torch.no_grad()
def evaluate(model, loader: DeviceLoader, precision: str, predictions: list | None = None,
             tta: bool = False, predictions_tta: list | None = None) -> EvalSums:
    """The loss sum, correct count, images and correct count with flip TTA (``EvalSums``) over the
    loader's split (this rank's share), from ``predict.batches`` (the one way colabkit
    predicts). With ``tta`` each image is also classified by the sum of its logits and
    those of its mirror image (horizontal-flip test-time augmentation); loss and the plain
    count are the unflipped image's alone. Each batch's predicted classes are appended to
    ``predictions`` (and ``predictions_tta``) if given."""
    device = loader.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    correct_tta = torch.zeros((), device=device, dtype=torch.long) if tta else None
    seen = 0
    for y, logits, both in batches(model, loader, precision, tta):
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
    return EvalSums(loss_sum, correct, seen, correct_tta)
