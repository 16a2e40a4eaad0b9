"""TensorBoard in a notebook: where to point it, and the view started inline.

While a run trains, its event file is written in the local working copy and reaches Drive
at each mirror, and Drive uploads files lazily (googlecolab/colabtools#521): a TensorBoard
on the Drive folder lags. So during training it is pointed at the working copies, and
afterwards (the report) at the runs on Drive. ``tensorboard`` and IPython are optional:
without them one line says what to run or install.
"""
from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from ..rundir.events import INSTALL, available
from .places import is_drive, local_area

REPLACED = "--detect_file_replacement=true"


def tensorboard_logdir(runs_dir: str | os.PathLike, training: bool = True) -> Path:
    """The folder to point TensorBoard at for the runs in ``runs_dir``: while training, the
    local working copies of runs on Drive (``colab.places.local_area``); else ``runs_dir``."""
    runs_dir = Path(runs_dir).expanduser()
    return local_area() if training and is_drive(runs_dir) else runs_dir


def show_tensorboard(runs_dir: str | os.PathLike, *, training: bool = True,
                     start: bool = True) -> Path:
    """Print where to point TensorBoard for ``runs_dir`` (see ``tensorboard_logdir``) and,
    with ``start`` in a notebook, start it there as ``%tensorboard --logdir`` does, telling
    it to read replaced event files again (``REPLACED``). It refreshes by itself while the
    next cells train. Returns the folder."""
    logdir = tensorboard_logdir(runs_dir, training)
    where = ("the local working copies: Drive uploads event files lazily" if logdir != Path(runs_dir).expanduser()
             else "the run folders")
    # the working copy appends to its event file, but Drive's copy is replaced at every
    # mirror (and any copy after a resume from an older checkpoint): TensorBoard reads a
    # replaced file again only with this flag
    args = f"--logdir {shlex.quote(str(logdir))} {REPLACED}"
    print(f"TensorBoard: %load_ext tensorboard, then %tensorboard {args} ({where}).")
    if not available():
        print(INSTALL)
        return logdir
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    if start and shell is not None and hasattr(shell, "kernel"):
        from tensorboard import notebook

        notebook.start(args)
    return logdir


__all__ = ["show_tensorboard", "tensorboard_logdir"]
