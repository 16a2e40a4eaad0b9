"""Where a run's files live: which folders are on Google Drive (the Colab mount point and
the folders in ``$COLABKIT_DRIVE``, ``os.pathsep``-separated: Dropbox, OneDrive, network
mounts, the tests' simulation), and the local working area on the VM's disk
(``$COLABKIT_LOCAL``) where a Drive run folder is trained and data is extracted."""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from . import drive

DRIVE_ENV, LOCAL_ENV = "COLABKIT_DRIVE", "COLABKIT_LOCAL"


def drive_roots() -> list[Path]:
    roots = [Path(drive.DRIVE_MOUNTPOINT)]
    roots += [Path(p).expanduser() for p in os.environ.get(DRIVE_ENV, "").split(os.pathsep) if p]
    return [r.resolve() for r in roots]


def is_drive(path: str | os.PathLike) -> bool:
    """True if ``path`` lies on Google Drive (or a folder given the Drive policy)."""
    p = Path(path).expanduser().resolve()
    return any(p == r or r in p.parents for r in drive_roots())


def local_area() -> Path:
    """The local working area: ``$COLABKIT_LOCAL``, else ``/content/colabkit-local`` in
    Colab, else ``<tmp>/colabkit-local``."""
    if os.environ.get(LOCAL_ENV):
        return Path(os.environ[LOCAL_ENV]).expanduser().resolve()
    return Path("/content/colabkit-local") if drive.in_colab() else \
        Path(tempfile.gettempdir()) / "colabkit-local"


def working_copy(run_dir: Path) -> Path:
    """``<local area>/<run name>``; a second Drive folder of the same name gets its own
    (the origin is recorded in ``.origin``)."""
    run_dir = Path(run_dir).expanduser().resolve()
    local = local_area() / run_dir.name
    origin = local / ".origin"
    try:
        if origin.is_file() and origin.read_text(encoding="utf-8") != str(run_dir):
            local = local_area() / f"{run_dir.name}-{hashlib.sha1(str(run_dir).encode()).hexdigest()[:8]}"
        local.mkdir(parents=True, exist_ok=True)
        (local / ".origin").write_text(str(run_dir), encoding="utf-8")
    except OSError as e:
        raise PermissionError(f"cannot create the local working copy {local} ({e}): set "
                              f"{LOCAL_ENV} to a folder on a local disk you can write to") from e
    return local
