"""The package's floors (docs/design.md, "The floors"): each module imports only modules listed above
it, at the top of the file, and stays small enough to read in one sitting; and a name of the
package means one thing."""
import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "colabkit"
# floor by floor, as in docs/design.md; a module may import only modules before it here
ORDER = ["version", "registry", "files", "augment", "models", "stats", "plotting", "quota",
         "runtime", "experiments", "runs", "checkpoint",
         "lease", "storage",
         "archives", "data", "loader", "distributed", "epochs", "resume", "saver", "train", "inspection", "weights",
         "status", "tables", "figures", "compare", "report", "sweep",
         "__main__"]
# imported where used, with the reason: google.colab exists only inside Colab; IPython
# (the notebook display) only where a notebook runs: a server, a torchrun node or a
# bare GPU machine has neither, and the package must import and train there
LAZY = {"google.colab", "IPython", "IPython.display"}


def _imports(path):
    """(colabkit modules imported, imports found inside functions)."""
    tree = ast.parse(path.read_text())
    inner = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
             for n in ast.walk(f) if n is not f}
    ours, hidden = set(), []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            ours |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or "."]
        if id(node) in inner and not set(names) <= LAZY:
            hidden.append(f"{path.name}:{node.lineno}")
    return ours, hidden


def test_every_module_imports_only_modules_above_it_and_only_at_the_top():
    modules = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
    assert sorted(ORDER) == modules, "add the new module to ORDER and to docs/design.md, \"The floors\""
    up, hidden = [], []
    for name in ORDER:
        ours, inner = _imports(PACKAGE / f"{name}.py")
        hidden += inner
        up += [f"{name} -> {m}" for m in ours if m not in ORDER[:ORDER.index(name)]]
    assert up == [] and hidden == []


def test_no_module_passes_500_lines():
    sizes = {p.name: len(p.read_text().splitlines()) for p in PACKAGE.glob("*.py")}
    assert {n: k for n, k in sizes.items() if k > 500} == {}


def test_no_two_modules_define_a_function_or_class_of_the_same_name():
    """One name, one meaning: two ``channel_stats`` (a data set's statistics from its
    images, and the loader's normalization tensors) took different inputs and gave different
    outputs, and a reader of one call could not tell which."""
    where: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                where.setdefault(node.name, []).append(path.stem)
    assert {name: mods for name, mods in where.items() if len(mods) > 1} == {}


# "run" is a run: its folder (a RunDir) or its name; never the verb (run_epoch, gone) nor
# the parts a run trains with (train.Parts, once "Trainer", passed as `run`). Each run_*
# name of the package, with what it means:
RUN_NAMES = {"run_name": "a run's folder name", "run_status": "where a run stands",
             "run_queue": "a queue of runs, trained in turn",
             "run_growth": "Drive's growth beyond a run's own files",
             "_run_flags": "the flags of a run, shared by train and sweep"}


def test_run_in_a_name_means_a_run():
    unknown, not_a_folder = [], []
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if node.name.lstrip("_").startswith("run_") and node.name not in RUN_NAMES:
                unknown.append(f"{path.name}: {node.name}")
            args = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
            not_a_folder += [f"{path.name}: {node.name}({a.arg}: {ast.unparse(a.annotation)})"
                             for a in args if a.arg == "run" and a.annotation is not None
                             and ast.unparse(a.annotation) not in ("RunDir", "str")]
    assert unknown == [], "name it for what it does, or add it to RUN_NAMES saying which run it is"
    assert not_a_folder == [], "a parameter named run is a run folder (RunDir) or a run's name"


def _defined(module: str) -> set[str]:
    """The names a module of the package defines at its top level (not those it imports)."""
    names = set()
    for node in ast.parse((PACKAGE / f"{module}.py").read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names


def test_each_name_is_imported_from_the_module_that_defines_it():
    """A name read through a module that merely imported it (storage passing on lease's
    names, its private ``_start_ticks`` among them) ties the reader to that module's imports:
    the package and the tests import from where a name is defined, and no module imports
    another's private name."""
    defined = {p.stem: _defined(p.stem) for p in PACKAGE.glob("*.py")}
    passed_on, private = [], []
    for path in [*PACKAGE.glob("*.py"), *(REPO / "tests").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or not node.module:
                continue
            if node.level == 1 and path.parent == PACKAGE:
                module = node.module
            elif node.level == 0 and node.module.startswith("colabkit."):
                module = node.module.split(".")[1]
            else:
                continue
            names = [a.name for a in node.names]
            passed_on += [f"{path.name}: {n} from {module}" for n in names if n not in defined[module]]
            if path.parent == PACKAGE:
                private += [f"{path.name}: {n} from {module}" for n in names if n.startswith("_") and not n.endswith("__")]
    assert passed_on == [], "import each name from the module that defines it"
    assert private == [], "a private name stays in its module: make it public, or move it"


# Private attributes of other objects that the package reads anyway, each with why and the
# test that fails the day it changes. argparse's (_actions, _group_actions, ...) were
# replaced by the parser's own lists of its flags and commands.
PRIVATE_USES = {
    "distributed.distributed_c10d._get_default_store":
        "torch has no public way to the default group's store: "
        "test_distributed.py::test_the_default_groups_store_is_there_as_dist_takes_it",
    "os._exit": "documented, the underscore is historic: "
                "test_distributed.py::test_a_thread_ends_its_process_at_once_while_the_main_thread_is_blocked",
}


def test_no_module_reads_a_private_attribute_of_another_object_unless_listed():
    found = []
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Attribute) or not node.attr.startswith("_") \
                    or node.attr.endswith("__"):
                continue
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            if ast.unparse(node) not in PRIVATE_USES:
                found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    assert found == [], "use a public API; where none does the same, list it with its test"


def test_the_design_page_lists_the_modules_in_the_same_order():
    text = (REPO / "docs" / "design.md").read_text(encoding="utf-8")
    section = text[text.index("## The floors"):]
    block = section[section.index("```") + 3:]
    listed = re.findall(r"^    (\w+) {2,}\S", block[:block.index("```")], re.M)
    assert listed == ORDER


def test_the_version_is_written_once():
    from colabkit import __version__
    from colabkit.version import __version__ as version
    assert __version__ == version
    toml = (REPO / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in toml and 'attr = "colabkit.version.__version__"' in toml
    project = toml[toml.index("[project]"):toml.index("\n[", toml.index("[project]"))]
    assert not re.search(r"^version\s*=", project, re.M)
    stated = [p for p in PACKAGE.glob("*.py") if re.search(r'__version__\s*=\s*"', p.read_text())]
    assert stated == [PACKAGE / "version.py"]


def test_the_distribution_has_its_own_name_and_is_installed_under_it():
    """pip's name is ours, never "colabkit" (another project on PyPI), in pyproject.toml and
    in the record colabkit reads its install commit from; the import name stays."""
    from importlib import metadata

    from colabkit.version import DISTRIBUTION
    toml = (REPO / "pyproject.toml").read_text()
    assert re.search(r'^name = "([^"]+)"', toml, re.M).group(1) == DISTRIBUTION != "colabkit"
    assert metadata.distribution(DISTRIBUTION).read_text("top_level.txt") in (None, "colabkit\n")
    assert "colabkit" in metadata.distribution(DISTRIBUTION).entry_points.names
