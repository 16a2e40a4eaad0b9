"""make release-check: a tree is ready to tag v<version> only when the notebooks install
that tag, the changelog has its entry, the notebooks are the generator's output and the
README's links agree with REPO_URL (tools/release_check.py)."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import release_check  # noqa: E402  (a tool, not a module of the package)

sys.path.pop(0)
VERSION = re.search(r'__version__ = "([^"]+)"', (REPO / "colabkit" / "version.py").read_text()).group(1)


@pytest.fixture
def tree(tmp_path):
    """A copy of what the release check reads."""
    root = tmp_path / "repo"
    for part in ("colabkit/version.py", "tools/make_notebooks.py", "CHANGELOG.md", "README.md"):
        (root / part).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / part, root / part)
    shutil.copytree(REPO / "notebooks", root / "notebooks")
    return root


def _edit(path: Path, old: str, new: str, count: int = 1):
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, count), encoding="utf-8")


def test_this_repository_is_ready_and_the_make_target_says_so():
    assert release_check.problems(REPO) == []
    done = subprocess.run(["make", "-s", "release-check", "PYTHON=" + sys.executable], cwd=REPO,
                          capture_output=True, text=True)
    assert done.returncode == 0 and "ready to tag" in done.stdout, done.stderr


def test_a_copy_passes_before_anything_is_planted(tree):
    assert release_check.problems(tree) == []


def test_a_wrong_ref_in_a_notebook_fails(tree):
    _edit(tree / "notebooks" / "02_resnet18_da.ipynb", f'REF = \\"v{VERSION}\\"', 'REF = \\"v0.2.0\\"')
    found = release_check.problems(tree)
    assert any("02_resnet18_da.ipynb: REF is 'v0.2.0'" in p for p in found), found
    assert release_check.main([str(tree)]) == 1


def test_a_version_bumped_without_regenerating_the_notebooks_fails(tree):
    _edit(tree / "colabkit" / "version.py", f'__version__ = "{VERSION}"', '__version__ = "9.9.9"')
    (tree / "CHANGELOG.md").write_text("# Changelog\n\n## [9.9.9] - 2099-01-01\n\n- planned\n")
    found = release_check.problems(tree)
    assert sum("REF is" in p and "not 'v9.9.9'" in p for p in found) == 6, found
    assert sum("is not what tools/make_notebooks.py writes" in p for p in found) == 6


def test_a_stale_notebook_fails(tree):
    nb = tree / "notebooks" / "05_report.ipynb"
    data = json.loads(nb.read_text())
    data["cells"][0]["source"][0] += " (edited by hand)"
    nb.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    found = release_check.problems(tree)
    assert found == ["notebooks/05_report.ipynb is not what tools/make_notebooks.py writes: run "
                     "it and commit the notebooks"]
    (tree / "notebooks" / "06_extra.ipynb").write_text((tree / "notebooks" / "00_run_all.ipynb").read_text())
    assert any("06_extra.ipynb is not written by" in p for p in release_check.problems(tree))


def test_a_missing_changelog_entry_fails(tree):
    _edit(tree / "CHANGELOG.md", f"## [{VERSION}]", "## [0.0.1]")
    found = release_check.problems(tree)
    assert found == [f"CHANGELOG.md has no entry for {VERSION}: add '## [{VERSION}] - <date>' "
                     "with what changed"]
    (tree / "CHANGELOG.md").unlink()
    assert len(release_check.problems(tree)) == 1


def test_readme_links_that_disagree_with_repo_url_fail(tree):
    _edit(tree / "README.md", "colab.research.google.com/github/colabkit/colabkit/blob/main/notebooks/02",
          "colab.research.google.com/github/someone/colabkit/blob/main/notebooks/02")
    found = release_check.problems(tree)
    assert found == ["README.md links to someone/colabkit, but REPO_URL is "
                     "https://github.com/colabkit/colabkit: make them agree"]
    with open(tree / "README.md", "a") as f:
        f.write('\npip install "git+https://github.com/colabkit/colabkit@v0.1.0"\n')
    assert "README.md installs @v0.1.0, not the release " in release_check.problems(tree)[-1]


def test_a_fork_regenerated_from_version_py_passes(tree):
    """Changing REPO_URL in the one place, regenerating, and fixing the README's links."""
    _edit(tree / "colabkit" / "version.py", "https://github.com/colabkit/colabkit",
          "https://github.com/someone/fork")
    assert any("notebooks/01_resnet18_basic.ipynb is not what" in p for p in release_check.problems(tree))
    subprocess.run([sys.executable, str(tree / "tools" / "make_notebooks.py")], check=True,
                   capture_output=True)
    assert all("README.md links to" in p for p in release_check.problems(tree))
    _edit(tree / "README.md", "colabkit/colabkit", "someone/fork", count=-1)
    assert release_check.problems(tree) == []
    assert "git+{REPO_URL}@{REF}" in (tree / "notebooks" / "01_resnet18_basic.ipynb").read_text()
    assert 'REPO_URL = \\"https://github.com/someone/fork\\"' in (tree / "notebooks" / "01_resnet18_basic.ipynb").read_text()
