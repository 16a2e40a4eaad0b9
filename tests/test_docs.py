"""docs/cli.md is the parser's own --help (tools/make_cli_docs.py): a flag added, removed or
reworded in colabkit/__main__.py without regenerating the page fails here."""
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import make_cli_docs  # noqa: E402  (a tool, not a module of the package)

sys.path.pop(0)
import colabkit.__main__ as cli  # noqa: E402


def test_the_committed_cli_page_is_what_the_parser_says():
    committed = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    assert committed == make_cli_docs.render(), (
        "docs/cli.md is stale: run python tools/make_cli_docs.py and commit it")
    assert make_cli_docs.stale() is None
    assert make_cli_docs.main(["--check"]) == 0


def test_the_page_has_every_subcommand_and_every_flag():
    page = make_cli_docs.render()
    parser = cli._parser()
    for name, _, sub in make_cli_docs._subcommands(parser):
        assert f"\n## {name}\n" in page
        for action in sub._actions:
            for flag in action.option_strings:
                assert flag in page, (name, flag)
    assert "--val-size" in page and "--allow-config-change" in page


def test_a_flag_added_to_the_parser_makes_the_page_stale(monkeypatch, tmp_path, capsys):
    page = tmp_path / "cli.md"
    page.write_text(make_cli_docs.render(), encoding="utf-8")
    assert make_cli_docs.main(["--check", "--out", str(page)]) == 0
    build = cli._parser

    def planted():
        parser = build()
        parser.commands["train"].add_argument("--planted-flag", help="a flag nobody documented")
        return parser

    monkeypatch.setattr(cli, "_parser", planted)
    assert "--planted-flag" in make_cli_docs.render()
    assert make_cli_docs.main(["--check", "--out", str(page)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "run python tools/make_cli_docs.py" in err[0], err
    # regenerating fixes it
    assert make_cli_docs.main(["--out", str(page)]) == 0
    assert make_cli_docs.main(["--check", "--out", str(page)]) == 0


def test_a_reworded_help_or_a_missing_page_is_stale(tmp_path):
    page = tmp_path / "cli.md"
    assert "run python tools/make_cli_docs.py" in make_cli_docs.stale(page)
    page.write_text(make_cli_docs.render().replace("no progress bars", "no bars"), encoding="utf-8")
    assert make_cli_docs.stale(page) is not None


@pytest.mark.parametrize("columns", ["40", "80", "250"])
def test_the_page_does_not_depend_on_the_terminal_width(monkeypatch, columns):
    expected = make_cli_docs.render()
    monkeypatch.setenv("COLUMNS", columns)
    assert make_cli_docs.render() == expected
    import os
    assert os.environ["COLUMNS"] == columns  # the caller's setting is put back


def test_usage_lines_wrap_between_parts_and_keep_a_flag_with_its_metavar():
    usage = ("usage: python -m colabkit train [-h] --experiment {a,b,c} --run-dir RUN_DIR "
             + " ".join(f"[--flag-{i} VALUE_{i}]" for i in range(12)) + " run_dir")
    wrapped = make_cli_docs._wrap_usage(usage, "python -m colabkit train")
    lines = wrapped.splitlines()
    assert len(lines) > 1 and all(len(line) <= make_cli_docs.WIDTH for line in lines)
    assert " ".join(wrapped.split()) == usage
    assert "--experiment {a,b,c}" in wrapped and "--run-dir RUN_DIR" in wrapped
    assert all(line.startswith(" " * 32) for line in lines[1:])


def test_the_python_api_page_names_every_public_name_and_no_other():
    import re

    import colabkit

    page = (REPO / "docs" / "python-api.md").read_text(encoding="utf-8")
    missing = [n for n in colabkit.__all__ if n != "__version__" and f"`{n}" not in page]
    assert missing == [], f"docs/python-api.md does not describe {missing}"
    # modules and wings, named as what may move
    modules = {p.stem for p in (REPO / "colabkit").glob("*.py")} | \
        {p.parent.name for p in (REPO / "colabkit").glob("*/__init__.py")}
    used = set(re.findall(r"\bcolabkit\.([A-Za-z_]\w*)", page)) - modules - {"__all__"}
    assert used - set(colabkit.__all__) == set(), "docs/python-api.md uses names colabkit does not export"
