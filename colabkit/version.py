"""colabkit's version, in this one place: ``pyproject.toml`` reads it from here
(``[tool.setuptools.dynamic]``), and so do the notebooks' generator and every run record."""
from __future__ import annotations

import json
import subprocess
from importlib import metadata
from pathlib import Path

__version__ = "0.2.0"


def colabkit_version() -> dict:
    """colabkit's version and, when known, the git commit it was installed from (pip's
    record of a ``git+URL@REF`` install) or runs from (a git checkout)."""
    commit = None
    try:
        url = json.loads(metadata.distribution("colabkit").read_text("direct_url.json") or "{}")
        commit = url.get("vcs_info", {}).get("commit_id")
    except (metadata.PackageNotFoundError, ValueError, OSError):
        pass
    if commit is None:
        try:
            commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                                    capture_output=True, text=True, timeout=5).stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            pass
    return {"version": __version__, "commit": commit}
