"""Runs ``python -m colabkit ...`` and SIGKILLs itself at the N-th call of a file-system
step whose arguments contain MATCH (every one of the ``&``-separated parts), to test
recovery from a death at that exact point:

- ``replace``: a rename (before it happens: between the steps of a checkpoint install,
  of a Drive mirror, of metrics.csv);
- ``truncate``: emptying a file before it is replaced (Drive's Trash rule);
- ``copyfileobj``: in the middle of a copy to Drive (half the bytes written);
- ``none``: no kill.

usage: python crash_child.py {replace|truncate|copyfileobj|none} N MATCH colabkit-args...
"""
import os
import shutil
import signal
import sys

kind, n, match = sys.argv[1], int(sys.argv[2]), sys.argv[3]
parts = [m for m in match.split("&") if m]
calls = 0


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def hit(args) -> bool:
    global calls
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


if kind == "copyfileobj":
    shutil.copyfileobj = killing_copy(shutil.copyfileobj)
elif kind != "none":
    setattr(os, kind, killing(getattr(os, kind)))

from colabkit.__main__ import main  # noqa: E402

sys.exit(main(sys.argv[4:]))
