"""Is this tree ready to be tagged ``v<version>``? (``make release-check``; docs/releasing.md)

Fails, one line per problem saying what to do, unless:
- every notebook's ``REF`` is ``v<version>`` (colabkit/version.py is the one place the version is written);
- CHANGELOG.md has an entry for that version;
- the notebooks are exactly what tools/make_notebooks.py writes;
- the README's GitHub and Colab links, and any ``git+...@v...`` install it shows, agree with
  ``REPO_URL`` and the release tag.
Only the standard library: it runs before any install.
"""
from __future__ import annotations

import argparse
import json
import re
import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _notebook_ref(path: Path) -> str | None:
    """The ``REF = "..."`` of a notebook's setup cell, or None."""
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        m = re.search(r'^REF = "([^"]*)"', "".join(cell["source"]), re.M)
        if cell["cell_type"] == "code" and m:
            return m.group(1)
    return None


def problems(root: Path = ROOT) -> list[str]:
    """What stands between ``root`` and a release; empty when it is ready."""
    release = runpy.run_path(str(root / "colabkit" / "version.py"))
    version, tag, url = release["__version__"], release["RELEASE_TAG"], release["REPO_URL"]
    owner_repo = url.removeprefix("https://github.com/").rstrip("/")
    found = []
    if tag != f"v{version}":
        found.append(f"colabkit/version.py: RELEASE_TAG is {tag!r}, not 'v{version}'")

    notebooks = sorted((root / "notebooks").glob("*.ipynb"))
    for nb in notebooks:
        ref = _notebook_ref(nb)
        if ref != f"v{version}":
            found.append(f"{nb.relative_to(root)}: REF is {ref!r}, not 'v{version}': run "
                         "python tools/make_notebooks.py")

    changelog = root / "CHANGELOG.md"
    text = changelog.read_text(encoding="utf-8") if changelog.is_file() else ""
    if not re.search(rf"^## \[?{re.escape(version)}\]?(\s|$)", text, re.M):
        found.append(f"CHANGELOG.md has no entry for {version}: add '## [{version}] - <date>' "
                     "with what changed")

    generator = runpy.run_path(str(root / "tools" / "make_notebooks.py"))
    expected = generator["render"]()
    for name, content in expected.items():
        path = root / "notebooks" / name
        if not path.is_file() or path.read_text(encoding="utf-8") != content:
            found.append(f"notebooks/{name} is not what tools/make_notebooks.py writes: run it "
                         "and commit the notebooks")
    for nb in notebooks:
        if nb.name not in expected:
            found.append(f"{nb.relative_to(root)} is not written by tools/make_notebooks.py: "
                         "add it there or remove it")

    readme = (root / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"(?:colab\.research\.google\.com/github|github\.com)/([\w.-]+/[\w.-]+)", readme)
    for other in sorted({link.removesuffix(".git") for link in links} - {owner_repo}):
        found.append(f"README.md links to {other}, but REPO_URL is {url}: make them agree")
    for ref in sorted(set(re.findall(r"git\+[^\s\"'`@]+@([\w.\-/]+)", readme)) - {tag}):
        found.append(f"README.md installs @{ref}, not the release {tag}")
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", nargs="?", type=Path, default=ROOT)
    found = problems(ap.parse_args(argv).root)
    for line in found:
        print(f"release-check: {line}", file=sys.stderr)
    if not found:
        print("release-check: ready to tag (docs/releasing.md)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
