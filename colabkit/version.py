"""colabkit's version and where it is released, in this one place: ``pyproject.toml``
reads the version from here (``[tool.setuptools.dynamic]``); the notebooks' generator
takes both (the notebooks install ``git+REPO_URL@v<version>``), and so do every run
record, the released weights' URLs and ``make release-check`` (docs/releasing.md)."""
from __future__ import annotations

import json
import subprocess
from importlib import metadata
from pathlib import Path

__version__ = "0.4.0"
REPO_URL = "https://github.com/colabkit/colabkit"
RELEASE_TAG = f"v{__version__}"
# pip's name for it (pyproject.toml): "colabkit" on PyPI is another, unrelated project
DISTRIBUTION = "colabkit-cifar"


def colabkit_version() -> dict:
    """colabkit's version and, when known, the git commit it was installed from (pip's
    record of a ``git+URL@REF`` install) or runs from (a git checkout)."""
    commit = None
    try:
        url = json.loads(metadata.distribution(DISTRIBUTION).read_text("direct_url.json") or "{}")
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
