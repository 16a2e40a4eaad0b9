"""Saving and showing matplotlib figures, shared by every module that draws: PNG for
reading, PDF for papers, the same bytes for the same figure."""
from __future__ import annotations

import io
from pathlib import Path

from matplotlib.figure import Figure


def save_figure(fig: Figure, out: Path, stem: str) -> list[Path]:
    paths = [out / f"{stem}.png", out / f"{stem}.pdf"]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1], metadata={"CreationDate": None})  # same runs, same bytes
    return paths


def png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def show(fig: Figure) -> None:
    """Display a figure in a notebook (as a PNG), or do nothing where IPython is absent
    (a server, a torchrun node)."""
    try:  # optional: only a notebook has IPython; the package runs without it
        from IPython.display import Image, display
    except ImportError:
        return
    display(Image(data=png_bytes(fig)))
