"""make release-check: a tree is ready to tag v<version> only when the notebooks install
that tag, the changelog has its entry, the notebooks are the generator's output, the
README's and docs' links agree with REPO_URL, and their relative links and anchors resolve
(tools/release_check.py)."""
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


def _files():
    """The checkout's files, tracked or not, but not what git ignores (venvs, data)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, text=True, check=True).stdout
    return [p for p in listed.split("\0") if p and (REPO / p).is_file()]


@pytest.fixture
def tree(tmp_path):
    """A copy of the checkout: what the release check reads, and what the pages link to."""
    root = tmp_path / "repo"
    for part in _files():
        (root / part).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / part, root / part)
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
    found = release_check.problems(tree)
    assert len(found) == 2 and found[0].startswith(f"CHANGELOG.md has no entry for {VERSION}")
    assert "broken link CHANGELOG.md" in found[1]  # the README links to it


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
    found = release_check.problems(tree)
    assert found and all(".md links to colabkit/colabkit, but REPO_URL is" in p for p in found), found
    for page in [tree / "README.md", *(tree / "docs").glob("*.md")]:
        if "colabkit/colabkit" in page.read_text(encoding="utf-8"):
            _edit(page, "colabkit/colabkit", "someone/fork", count=-1)
    assert release_check.problems(tree) == []
    assert "git+{REPO_URL}@{REF}" in (tree / "notebooks" / "01_resnet18_basic.ipynb").read_text()
    assert 'REPO_URL = \\"https://github.com/someone/fork\\"' in (tree / "notebooks" / "01_resnet18_basic.ipynb").read_text()


# ---- relative links and anchors in README.md and docs/*.md

def test_every_relative_link_and_anchor_of_the_pages_resolves():
    assert release_check.link_problems(REPO) == []
    pages = [REPO / "README.md", *(REPO / "docs").glob("*.md")]
    links = sum(len(release_check._links(page.read_text(encoding="utf-8"))) for page in pages)
    assert links > 20  # the check has links to check


def test_a_link_to_a_missing_file_fails_naming_the_line(tree):
    readme = tree / "README.md"
    lines = readme.read_text(encoding="utf-8").splitlines()
    lines.insert(2, "See [the guide](docs/no-such-page.md).")
    readme.write_text("\n".join(lines) + "\n", encoding="utf-8")
    found = release_check.problems(tree)
    assert found == ["README.md:3: broken link docs/no-such-page.md: there is no "
                     "docs/no-such-page.md; fix the path (relative to the page's folder) or add "
                     "the file"], found
    assert release_check.main([str(tree)]) == 1


def test_a_moved_page_breaks_the_links_to_it(tree):
    (tree / "docs" / "recipes.md").rename(tree / "docs" / "recipe.md")
    found = release_check.problems(tree)
    assert found and all("broken link" in p and "recipes.md" in p for p in found), found
    assert any(p.startswith("README.md:") for p in found)


def test_an_anchor_no_heading_has_fails_with_the_closest(tree):
    page = tree / "docs" / "experiments.md"
    with open(page, "a", encoding="utf-8") as f:
        f.write("\nSee [the recipes](recipes.md#the-evidense) and [above](#cifar12-the-data-sett).\n")
    found = release_check.problems(tree)
    assert len(found) == 2, found
    assert "docs/experiments.md:" in found[0] and "broken anchor recipes.md#the-evidense" in found[0]
    assert "docs/recipes.md has no heading #the-evidense (the closest is #the-evidence)" in found[0]
    assert "broken anchor #cifar12-the-data-sett: docs/experiments.md has no heading" in found[1]


def test_a_renamed_heading_breaks_the_anchors_to_it(tree):
    _edit(tree / "docs" / "colab-and-drive.md", "## The Trash", "## Drive's bin")
    found = release_check.problems(tree)
    assert found and all("#the-trash" in p and "has no heading" in p for p in found), found


def test_a_link_whose_text_runs_over_two_lines_is_checked_on_its_line(tree):
    with open(tree / "docs" / "design.md", "a", encoding="utf-8") as f:
        f.write("\nA link [over two\nlines](nowhere.md) and [a badge ![img](figures/none.png)](design.md).\n")
    found = release_check.problems(tree)
    n = len((tree / "docs" / "design.md").read_text(encoding="utf-8").splitlines())
    assert len(found) == 2, found
    assert all(p.startswith(f"docs/design.md:{n}: broken link") for p in found), found
    assert "there is no docs/nowhere.md" in found[0] and "there is no docs/figures/none.png" in found[1]


def test_links_in_code_and_urls_are_not_checked(tree):
    with open(tree / "docs" / "design.md", "a", encoding="utf-8") as f:
        f.write("\nIn code: `[x](missing.md)`.\n\n```\n[y](missing.md#nowhere)\n```\n\n"
                "A URL: [z](https://example.org/missing.md#nowhere).\n")
    assert release_check.problems(tree) == []


def test_github_heading_anchors():
    assert release_check.slug("Cost: Drive space, GPU hours") == "cost-drive-space-gpu-hours"
    assert release_check.slug("The `fast` recipe (evidence)") == "the-fast-recipe-evidence"
    assert release_check.slug("Trash — and quota") == "trash--and-quota"
    assert release_check.slug("[Links](x.md) and my_name") == "links-and-my_name"
    text = "# A\n\n## A\n\n```\n# not a heading\n```\n\nB\n---\n\n## A\n"
    assert release_check.anchors(text) == {"a", "a-1", "a-2", "b"}
