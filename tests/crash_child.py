"""Runs ``python -m colabkit ...`` and stops itself at an exact event, to test recovery
from a death there. Every stop is an event of the program (a call, a file), never a
time, so the tests do not depend on how fast the machine is.

- ``replace``: SIGKILL at the N-th rename whose arguments contain MATCH (every one of the
  ``&``-separated parts): between the steps of a checkpoint install, of a Drive mirror,
  of metrics.csv;
- ``truncate``: SIGKILL at the N-th emptying of a file before it is replaced (Drive's Trash
  rule);
- ``copyfileobj``: SIGKILL in the middle of the N-th copy to Drive (part of the bytes written);
- ``term``: SIGTERM (as Colab, ``kill`` or torchrun sends it) at the N-th rename whose
  arguments contain MATCH; the process handles it as it will;
- ``step``: SIGKILL at the start of the N-th optimizer step (anywhere in training);
- ``pause``: once a ``metrics.csv`` whose path contains MATCH holds N rows, create the file
  named by ``$CRASH_MARKER`` and wait there for the test to kill the process (or, with
  ``CRASH_PAUSE=stop``, stop until the test sends SIGCONT, once);
- ``raise``: on the rank numbered MATCH alone (``$RANK`` under torchrun), raise a
  RuntimeError at the start of its N-th optimizer step, after writing the time to
  ``$CRASH_MARKER``;
- ``none``: no stop.

usage: python crash_child.py {replace|truncate|copyfileobj|term|step|pause|raise|none} N MATCH colabkit-args...
As a module: ``arm(kind, n, match)`` sets the same trap in this process (a notebook kernel).
"""
import os
import shutil
import signal
import sys
from pathlib import Path


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def arm(kind: str, n: int, match: str, marker: str | None = None) -> None:
    parts = [m for m in match.split("&") if m]
    calls, paused, fired = 0, [], []
    marker = marker or os.environ.get("CRASH_MARKER")

    def hit(args) -> bool:
        nonlocal calls
        text = " ".join(str(a) for a in args)
        if all(p in text for p in parts):
            calls += 1
        return calls == n

    def killing(real):
        def wrapper(*args, **kwargs):
            if hit(args):
                die()
            return real(*args, **kwargs)
        return wrapper

    def killing_copy(real):
        def wrapper(src, dst, *args, **kwargs):
            if hit([getattr(src, "name", ""), getattr(dst, "name", "")]):
                dst.write(src.read(1 << 16))  # part of the bytes reach the file, then death
                dst.flush()
                die()
            return real(src, dst, *args, **kwargs)
        return wrapper

    def pausing(real):
        def wrapper(src, dst, *args, **kwargs):
            out = real(src, dst, *args, **kwargs)
            dst = Path(dst)
            if dst.name == "metrics.csv" and all(p in str(dst) for p in parts):
                rows = len(dst.read_text().splitlines()) - 1
                if rows >= n and not paused:
                    paused.append(rows)
                    Path(marker).write_text(str(os.getpid()))
                    if os.environ.get("CRASH_PAUSE") == "stop":
                        os.kill(os.getpid(), signal.SIGSTOP)  # until the test sends SIGCONT
                    else:
                        while True:  # until the test kills this process
                            signal.pause()
            return out
        return wrapper

    if kind == "copyfileobj":
        shutil.copyfileobj = killing_copy(shutil.copyfileobj)
    elif kind == "step":
        import torch

        real_step = torch.optim.SGD.step

        def step(self, *args, **kwargs):
            if hit(["step"]):
                die()
            return real_step(self, *args, **kwargs)
        torch.optim.SGD.step = step
    elif kind == "raise":
        import time

        import torch

        real_step = torch.optim.SGD.step

        def step(self, *args, **kwargs):
            if os.environ.get("RANK", "0") == match and hit([f"rank {match}"]):
                Path(marker).write_text(repr(time.time()))
                raise RuntimeError(f"planted failure on rank {match}")
            return real_step(self, *args, **kwargs)
        torch.optim.SGD.step = step
    elif kind == "term":
        real_replace = os.replace

        def replace(*args, **kwargs):
            if hit(args) and not fired:  # once: hit() stays true until the next match
                fired.append(n)
                os.kill(os.getpid(), signal.SIGTERM)
            return real_replace(*args, **kwargs)
        os.replace = replace
    elif kind == "pause":
        os.replace = pausing(os.replace)
    elif kind != "none":
        setattr(os, kind, killing(getattr(os, kind)))


if __name__ == "__main__":
    arm(sys.argv[1], int(sys.argv[2]), sys.argv[3])
    from colabkit.__main__ import main

    sys.exit(main(sys.argv[4:]))
