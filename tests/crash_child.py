"""Runs ``python -m colabkit ...`` and SIGKILLs itself at the N-th call of a file-system
step (``fsync``: bytes written, not yet renamed; ``replace``: between the renames of a
checkpoint or of metrics.csv), to test recovery from a death at that exact point.

usage: python crash_child.py {fsync|replace|none} N colabkit-args...
"""
import os
import signal
import sys

kind, n = sys.argv[1], int(sys.argv[2])
calls = 0


def killing(real):
    def wrapper(*args, **kwargs):
        global calls
        calls += 1
        if calls == n:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    return wrapper


if kind != "none":
    setattr(os, kind, killing(getattr(os, kind)))

from colabkit.__main__ import main  # noqa: E402

sys.exit(main(sys.argv[3:]))
