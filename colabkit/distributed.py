"""One process or several under ``torchrun``: rank, world size and the few collective
operations training needs (sums, an any-rank flag, rank 0's BatchNorm statistics)."""
from __future__ import annotations

import os

import torch
import torch.distributed as distributed
from torch import nn

from .runtime import choose_device


class Dist:
    """Rank and world size; a single process unless started by torchrun."""

    def __init__(self, device: torch.device | None):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank, self.owns_group = 0, False
        self.device = device
        if self.world > 1:
            local = int(os.environ.get("LOCAL_RANK", "0"))
            cuda = torch.cuda.is_available() and (device is None or device.type == "cuda")
            if cuda:
                self.device = torch.device("cuda", local)
                torch.cuda.set_device(self.device)
            else:
                self.device = torch.device("cpu")
            if not distributed.is_initialized():
                distributed.init_process_group("nccl" if cuda else "gloo")
                self.owns_group = True
            self.rank = distributed.get_rank()
        self.device = choose_device(self.device)
        self.main = self.rank == 0

    def sum(self, *values: torch.Tensor) -> list[torch.Tensor]:
        """All-reduced sums (unchanged in a single process)."""
        if self.world == 1:
            return list(values)
        # gloo/nccl reduce float64 and int64 fine; pack to one call
        packed = torch.stack([v.double() for v in values])
        distributed.all_reduce(packed)
        return list(packed.unbind())

    def any(self, flag: bool) -> bool:
        """True on every rank if any rank says True (keeps ranks in step)."""
        if self.world == 1:
            return flag
        return bool(self.sum(torch.tensor(float(flag), device=self.device))[0] > 0)

    def broadcast_buffers(self, model: nn.Module) -> None:
        """Rank 0's buffers (BatchNorm running statistics) on every rank."""
        if self.world > 1:
            for b in model.buffers():
                distributed.broadcast(b, 0)

    def barrier(self) -> None:
        if self.world > 1:
            distributed.barrier()

    def close(self) -> None:
        if self.owns_group:
            distributed.destroy_process_group()
