"""Is this tree ready to be tagged ``v<version>``? (``make release-check``; docs/releasing.md)

Fails, one line per problem saying what to do, unless:
- every notebook's ``REF`` is ``v<version>`` (colabkit/version.py is the one place the version is written);
- CHANGELOG.md has an entry for that version;
- the notebooks are exactly what tools/make_notebooks.py writes;
- the GitHub and Colab links of README.md and docs/*.md, and any ``git+...@v...`` install
  they show, agree with ``REPO_URL`` and the release tag;
- every relative link of README.md and docs/*.md (``[text](path)``, ``[text](path#anchor)``,
  ``[text](#anchor)``, images too) names a file that exists, and every anchor a heading of
  the target page, by GitHub's rules for heading anchors. Links in code are not links.
Only the standard library: it runs before any install.
"""
from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import runpy
import sys
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parents[1]


def _notebook_ref(path: Path) -> str | None:
    """The ``REF = "..."`` of a notebook's setup cell, or None."""
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        m = re.search(r'^REF = "([^"]*)"', "".join(cell["source"]), re.M)
        if cell["cell_type"] == "code" and m:
            return m.group(1)
    return None


# ---- links and anchors

FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
INLINE_CODE = re.compile(r"(`+).+?\1")
# [text](target "title"), the text holding at most one level of brackets (a badge's image)
LINK = re.compile(r"\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(\s*<?([^)\s>]*)>?(?:\s+[\"'][^)]*[\"'])?\s*\)")
DEFINITION = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s.*)?$")  # [ref]: target
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
UNDERLINE = re.compile(r"^\s{0,3}(=+|-+)\s*$")
HTML_ANCHOR = re.compile(r"<a\s[^>]*\b(?:name|id)=[\"']([^\"']+)[\"']", re.I)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, ...


def _prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of the lines outside fenced code blocks."""
    out, fence = [], None
    for number, line in enumerate(text.splitlines(), 1):
        if fence is None:
            m = FENCE.match(line)
            if m:
                fence = m.group(1)
            else:
                out.append((number, line))
        elif line.strip().startswith(fence) and not line.strip().strip(fence[0]):
            fence = None
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text as rendered (a link by its text, no
    markup), lowercased, every character but letters, digits, ``_``, ``-`` and spaces
    removed, each space a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text)
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every anchor of a page: one per heading, a repeated one with -1, -2, ... as GitHub
    numbers them, and ``<a name=...>`` / ``id=...``."""
    found, seen = set(), {}
    lines = _prose_lines(text)
    for i, (number, line) in enumerate(lines):
        m = HEADING.match(line)
        title = m.group(2) if m else None
        after = lines[i + 1] if i + 1 < len(lines) else (0, "")
        if title is None and line.strip() and not line.lstrip().startswith(("|", "-", "*", ">", "<")) \
                and after[0] == number + 1 and UNDERLINE.match(after[1]):
            title = line.strip()  # a heading underlined with === or ---
        if title is not None:
            base = slug(title)
            n = seen.get(base, 0)
            found.add(base if n == 0 else f"{base}-{n}")
            seen[base] = n + 1
        found.update(HTML_ANCHOR.findall(line))
    return found


def _links(text: str) -> list[tuple[int, str]]:
    """(line number, target) of every link of a page's prose, inline code left out; a link
    whose text runs over two lines too, and a link inside a link's text (a badge's image)."""
    found, group = [], []
    lines = _prose_lines(text) + [(0, "")]
    for i, (number, line) in enumerate(lines):
        if line.strip():
            group.append((number, INLINE_CODE.sub(lambda c: " " * len(c.group(0)), line)))
            m = DEFINITION.match(group[-1][1])
            if m:
                found.append((number, -1, m.group(1)))
        if group and (not line.strip() or lines[i + 1][0] != number + 1):
            starts, joined = [], ""
            for n, part in group:  # one paragraph, one string; offsets back to lines
                starts.append((len(joined), n))
                joined += part + " "
            todo = [(0, joined)]
            while todo:
                base, chunk = todo.pop()
                for m in LINK.finditer(chunk):
                    at = base + m.start(2)
                    found.append((max(n for s, n in starts if s <= at), at, m.group(2)))
                    todo.append((base + m.start(1), m.group(1)))
            group = []
    return [(n, target) for n, _, target in sorted(found)]  # in reading order


def link_problems(root: Path) -> list[str]:
    """One line per relative link of README.md and docs/*.md that names no file, or an
    anchor that no heading of its target page has."""
    root = root.resolve()
    cache: dict[Path, set[str]] = {}
    found = []
    for page in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        if not page.is_file():
            continue
        name, folder = page.relative_to(root).as_posix(), page.parent.relative_to(root).as_posix()
        for number, target in _links(page.read_text(encoding="utf-8")):
            if not target or SCHEME.match(target) or target.startswith("//"):
                continue  # a URL: not checked here
            path, _, anchor = target.partition("#")
            path, anchor = unquote(path), unquote(anchor)
            dest = (root / path.lstrip("/") if path.startswith("/") else
                    page.parent / path if path else page).resolve()
            if not dest.exists():
                missing = os.path.normpath(path.lstrip("/") if path.startswith("/") else
                                           os.path.join(folder, path))
                found.append(f"{name}:{number}: broken link {target}: there is no "
                             f"{Path(missing).as_posix()}; fix the path (relative to the "
                             "page's folder) or add the file")
                continue
            if not anchor:
                continue
            if dest.suffix.lower() != ".md" or not dest.is_file():
                found.append(f"{name}:{number}: broken link {target}: #{anchor} on a file that "
                             "is not a Markdown page; link to the file alone")
                continue
            if dest not in cache:
                cache[dest] = anchors(dest.read_text(encoding="utf-8"))
            if anchor not in cache[dest]:
                close = difflib.get_close_matches(anchor, sorted(cache[dest]), n=1)
                hint = f" (the closest is #{close[0]})" if close else ""
                found.append(f"{name}:{number}: broken anchor {target}: "
                             f"{dest.relative_to(root).as_posix()} has no heading #{anchor}"
                             f"{hint}; fix the link or the heading")
    return found


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

    for page in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        if not page.is_file():
            continue
        text, name = page.read_text(encoding="utf-8"), page.relative_to(root).as_posix()
        links = re.findall(r"(?:colab\.research\.google\.com/github|github\.com)/([\w.-]+/[\w.-]+)", text)
        for other in sorted({link.removesuffix(".git") for link in links} - {owner_repo}):
            found.append(f"{name} links to {other}, but REPO_URL is {url}: make them agree")
        # a ref followed by "<" is a placeholder (@v<version>), not a release
        for ref in sorted(set(re.findall(r"git\+[^\s\"'`@]+@([\w.\-/]+)(?![\w.\-/<])", text)) - {tag}):
            found.append(f"{name} installs @{ref}, not the release {tag}")
    return found + link_problems(root)


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
