"""The on-device loader: one split kept on the training device as uint8, served in
batches that are normalized and augmented there, in one go, with each epoch's order and
augmentation drawn from a generator fixed by (seed, epoch). Under DDP each process takes
its slice of every global batch, augmented exactly as in one process."""
from __future__ import annotations

from typing import NamedTuple

from typing import Iterator

import numpy as np
import torch

from ..registry import SettingError, setting
from .augment import Augmenter, Part


def epoch_generator(seed: int, epoch: int, device: torch.device | str = "cpu") -> torch.Generator:
    """The generator for one epoch's randomness (order and augmentation), fixed by
    (seed, epoch), so a resumed epoch sees the very same batches."""
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1_000_003 + epoch) % (2 ** 63))
    return g


def unit_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC images as float NCHW in [0, 1] (a view: channels_last in memory)."""
    return x.permute(0, 3, 1, 2).float().div_(255)


def normalization_tensors(mean, std, device) -> tuple[torch.Tensor, torch.Tensor]:
    """A data set's per-channel ``mean`` and ``std`` (``data.sources.channel_mean_std``) as the
    (1, C, 1, 1) tensors on ``device`` that images are normalized with, ``(x - mean) / std``,
    in training and inspection alike."""
    return (torch.tensor(mean, device=device, dtype=torch.float32).view(1, -1, 1, 1),
            torch.tensor(std, device=device, dtype=torch.float32).view(1, -1, 1, 1))


class DeviceLoader:
    """One split kept on the training device as uint8 NHWC; batches come out as
    normalized float (B, 3, H, W), channels_last in memory on CUDA.

    Every epoch a permutation from ``epoch_generator(seed, epoch)`` (train); augmentation
    draws from the same generator. ``transform``, if given, maps every batch in [0, 1]
    before normalization, as augmentation does (inspection's flips and rotations). Under
    DDP each rank takes its slice of every global batch, so the global batches do not
    depend on the number of ranks.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, *, device="cpu",
                 mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), train: bool = False,
                 seed: int = 0, augment: Augmenter | None = None,
                 drop_last: bool | None = None, rank: int = 0, world_size: int = 1,
                 channels_last: bool | None = None, transform=None):
        if batch_size % world_size:
            raise ValueError(f"batch size {batch_size} must be divisible by the number of "
                             f"processes ({world_size})")
        self.device = torch.device(device)
        # NHWC uint8 (66,000 CIFAR-12 images: 203 MB), copied to the device once
        self.x = torch.from_numpy(np.ascontiguousarray(x)).to(self.device)
        self.y = torch.from_numpy(np.asarray(y, dtype=np.int64)).to(self.device)
        self.batch_size, self.train, self.seed = batch_size, train, seed
        self.augment = augment if (augment is not None and augment.active) else None
        self.drop_last = train if drop_last is None else drop_last
        if train and self.drop_last and len(self.y) < batch_size:
            raise SettingError(lambda batch: f"the training split has {len(self.y)} images, "
                               f"fewer than one batch of {batch_size}: lower the batch size ({batch})",
                               batch=setting("batch_size"))
        self.rank, self.world_size = rank, world_size
        cl = self.device.type == "cuda" if channels_last is None else channels_last
        self.memory_format = torch.channels_last if cl else torch.contiguous_format
        self.mean, self.std = normalization_tensors(mean, std, self.device)
        self.transform = transform  # a fixed test-time transform of the [0, 1] batch

    def __len__(self) -> int:
        n = len(self.y)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        # the batches depend on the epoch (order, augmentation): a bare `for` once gave
        # epoch 1's batches every time, so the caller names the epoch
        raise TypeError("a DeviceLoader's batches depend on the epoch: iterate over "
                        "loader.epoch(n) (any n for a test split, whose order never changes)")

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.y)
        g = epoch_generator(self.seed, epoch, self.device)
        order = (torch.randperm(n, device=self.device, generator=g) if self.train
                 else torch.arange(n, device=self.device))
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            part = None
            if self.world_size > 1:  # this rank's slice; augmented as in one process
                per = -(-len(idx) // self.world_size)
                part = Part(self.rank * per, min((self.rank + 1) * per, len(idx)), len(idx))
                idx = idx[part.start:part.stop]
            x = unit_float(self.x[idx])
            if self.augment is not None:
                x = self.augment(x, g, part)
            if self.transform is not None:
                x = self.transform(x)
            x = ((x - self.mean) / self.std).contiguous(memory_format=self.memory_format)
            yield x, self.y[idx]


class Loaders(NamedTuple):
    """One run's splits on the device: the training split (shuffled and augmented per
    epoch), the test split and the validation split (None without one)."""
    train: DeviceLoader
    test: DeviceLoader
    val: DeviceLoader | None


def eval_batch_size(batch_size: int, world_size: int = 1) -> int:
    """The global batch of evaluation for a training batch of ``batch_size``: as many
    images per rank as a step's four (at least 256 in all), since evaluation keeps no
    activations for a backward pass."""
    return max(batch_size // world_size * 4, 256) * world_size


def run_loaders(data, batch_size: int, *, seed: int, augment: Augmenter, device, rank: int = 0,
                world_size: int = 1) -> Loaders:
    """A run's loaders from its ``Dataset`` (``data.sources``): ``batch_size`` is the
    global batch; evaluation takes larger batches (``eval_batch_size``)."""
    shard = dict(device=device, mean=data.mean, std=data.std, rank=rank, world_size=world_size)
    eval_batch = eval_batch_size(batch_size, world_size)
    return Loaders(
        DeviceLoader(data.x_train, data.y_train, batch_size, train=True, seed=seed, augment=augment,
                     **shard),
        DeviceLoader(data.x_test, data.y_test, eval_batch, **shard),
        None if data.x_val is None else DeviceLoader(data.x_val, data.y_val, eval_batch, **shard))
