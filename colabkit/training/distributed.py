"""One process or several under ``torchrun``: rank, world size and the few collective
operations training needs (sums, an any-rank flag, rank 0's BatchNorm statistics), and
an error on one rank ending them all.

A rank that raises while the others wait in a collective would leave them there until
the backend's timeout (NCCL's: 10 minutes), then crashing with no cause shown. So the
failing rank writes its error to the group's key-value store, a thread on every rank
watches for it, and a rank that sees another's error ends its process at once (rank 0
first naming the cause, then running ``on_kill``: the last mirror, the lease released),
as a kill would: checkpoints are kill-safe."""
from __future__ import annotations

import os
import sys
import threading
import time
from typing import Callable

import torch
import torch.distributed as distributed
from torch import nn

from ..colab.device import choose_device


ERROR_KEY, COUNT_KEY, SEEN_KEY = "colabkit/error", "colabkit/errors", "colabkit/error-seen"
WATCH_SECONDS = 0.2  # how often each rank looks for another's error
SEEN_WAIT_SECONDS = 5.0  # how long a failing rank waits for rank 0 to name its error
GRACE_SECONDS = 1.0  # a rank failing on its own too (the same bad input) ends by itself


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
        self._store, self._done, self._failing = None, threading.Event(), threading.Event()
        self._watcher: threading.Thread | None = None
        # what a rank ended by another's error does first (training sets it: the stop's
        # last mirror and the lease released), while its main thread may wait in a collective
        self.on_kill: Callable[[], object] | None = None
        if self.world > 1:
            # torch has no public way to the default group's key-value store: this private
            # one is held by tests/test_distributed.py, which fails the day torch changes it
            self._store = distributed.distributed_c10d._get_default_store()
            self._watcher = threading.Thread(target=self._watch, name="colabkit-ranks", daemon=True)
            self._watcher.start()

    def fail(self, error: BaseException) -> None:
        """Tell every rank that this one stops with ``error``, so that they stop too
        instead of waiting in a collective; a rank other than 0 waits (a few seconds at
        most) for rank 0 to have named the cause. Nothing in a single process."""
        if self._store is None or self._done.is_set():
            return
        self._failing.set()  # this rank ends by itself: its watcher leaves it to finish
        lines = str(error).strip().splitlines() or [""]
        text = f"rank {self.rank}: {type(error).__name__}: {lines[0][:300]}"
        try:
            if self._store.add(COUNT_KEY, 1) == 1:  # the first error is the cause
                self._store.set(ERROR_KEY, text)
            elif self.main:  # another rank's came first: name it, not only our own
                self._name_cause(self._store.get(ERROR_KEY).decode())
            if not self.main:
                deadline = time.monotonic() + SEEN_WAIT_SECONDS
                while time.monotonic() < deadline and not self._store.check([SEEN_KEY]):
                    time.sleep(WATCH_SECONDS / 2)
        except Exception:  # noqa: BLE001 - the store is gone: the others are ending anyway
            pass

    def _watch(self) -> None:
        """Another rank's error ends this process: rank 0 names it first."""
        while not self._done.wait(WATCH_SECONDS):
            try:
                if not self._store.check([ERROR_KEY]):
                    continue
                text = self._store.get(ERROR_KEY).decode()
            except Exception:  # noqa: BLE001 - the store is briefly or finally out of reach
                continue
            if text.startswith(f"rank {self.rank}: ") or self._done.is_set():
                return  # our own error: this rank is already on its way out
            if self._failing.wait(GRACE_SECONDS):
                return  # this rank failed too (the same error): it ends by itself, cleanly
            if self.main:
                self._name_cause(text)
            if self.on_kill is not None:
                try:
                    self.on_kill()
                except BaseException as e:  # noqa: BLE001 - the process ends below regardless
                    print(f"rank {self.rank}: could not close the run ({e})", file=sys.stderr, flush=True)
            # a kill: this rank may be blocked in a collective that never returns. os._exit
            # is documented (the underscore is historic) and ends the process from any thread
            os._exit(1)

    def _name_cause(self, text: str) -> None:
        print(f"error: {text}. Every process of this run stops; run the same command "
              "again to resume from the last checkpoint.", file=sys.stderr, flush=True)
        try:
            self._store.set(SEEN_KEY, "1")
        except Exception:  # noqa: BLE001 - the failing rank then waits its few seconds
            pass

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
        """Stop the watcher, then the process group. The watcher is joined first: a thread
        still inside a call of the store while the group (and its store) is torn down ended
        a finished rank with "terminate called without an active exception" (SIGABRT,
        torch 2.11, seen once in a CI run)."""
        self._done.set()
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(timeout=10 * WATCH_SECONDS)
        if self.owns_group:
            distributed.destroy_process_group()
