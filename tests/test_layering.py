"""colabkit (every module, and colabkit.version): the package's floors (docs/design.md, "The floors"): each module imports only modules listed above
it, at the top of the file, and stays small enough to read in one sitting; and a name of the
package means one thing."""
import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "colabkit"
# The floors, bottom to top, as in docs/design.md: the modules at the package's top and its
# wings (subpackages), each wing's modules in their own order. A module may import only
# modules before it here: down the wings, and down inside its wing.
FLOORS = [
    ("colabkit", ["version", "registry", "models"]),
    ("rundir", ["rundir.files", "rundir.runs", "rundir.events", "rundir.checkpoint"]),
    ("colab", ["colab.drive", "colab.device", "colab.places", "colab.board", "colab.quota",
               "colab.lease", "colab.storage"]),
    ("data", ["data.augment", "data.archives", "data.sources", "data.loader"]),
    ("colabkit", ["experiments"]),
    ("training", ["training.distributed", "training.predict", "training.epochs", "training.resume", "training.saver",
                  "training.loop"]),
    ("report", ["report.stats", "report.plotting", "report.tables", "report.figures",
                "report.compare", "report.status", "report.inspection", "report.write"]),
    ("colabkit", ["weights", "sweeps", "__main__"]),
]
ORDER = [m for _, modules in FLOORS for m in modules]
WINGS = sorted({w for w, _ in FLOORS} - {"colabkit"})
# what a wing may not stand on although it lies below: reading CIFAR needs to know where
# Drive is (colab.places, colab.drive), never the mirror, the lease or Drive's quota
NEVER = {"data": {"colab.quota", "colab.lease", "colab.storage"}}
# imported where used, with the reason: google.colab exists only inside Colab; IPython
# (the notebook display) only where a notebook runs: a server, a torchrun node or a
# bare GPU machine has neither, and the package must import and train there; tensorboard
# is optional outside Colab (with the protobuf it brings). The command line imports each
# command's modules in it. A name here covers its submodules.
LAZY = {"google.colab", "IPython", "tensorboard", "google.protobuf"}


def _modules() -> dict[str, Path]:
    """Every module of the package by its dotted name under colabkit (``colab.lease``);
    a wing's ``__init__`` by the wing's name, the package's own as ``__init__``."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _resolve(module: str, node: ast.ImportFrom) -> set[str]:
    """The modules of the package that a relative import in ``module`` names."""
    package = module.split(".") if module in WINGS else module.split(".")[:-1]
    base = package[:len(package) - (node.level - 1)]
    target = base + (node.module.split(".") if node.module else [])
    dotted = ".".join(target)
    if dotted in MODULES and not (PACKAGE / dotted.replace(".", "/")).is_dir():
        return {dotted}
    return {".".join(target + [a.name]) for a in node.names}  # from a package: its modules


def _imports(module):
    """(modules of the package imported at the top, imports found inside functions)."""
    tree = ast.parse(MODULES[module].read_text())
    inner = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
             for n in ast.walk(f) if n is not f}
    ours, hidden = set(), []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, ast.ImportFrom) and node.level >= 1:
            ours |= _resolve(module, node)
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or "."]
        lazy = all(any(n == r or n.startswith(r + ".") for r in LAZY) for n in names)
        if id(node) in inner and not lazy and module != "__main__":
            hidden.append(f"{module}:{node.lineno}")
    return ours, hidden


def test_every_module_imports_only_modules_below_it_and_only_at_the_top():
    listed = set(ORDER) | set(WINGS) | {"__init__"}
    assert sorted(MODULES) == sorted(listed), \
        "add the new module to FLOORS and to docs/design.md, \"The floors\""
    up, hidden, never = [], [], []
    for name in ORDER:
        ours, inner = _imports(name)
        hidden += inner
        up += [f"{name} -> {m}" for m in sorted(ours) if m not in ORDER[:ORDER.index(name)]]
        wing = name.split(".")[0]
        never += [f"{name} -> {m}" for m in sorted(ours) if m in NEVER.get(wing, ())]
    assert up == [], "a module imports only modules below it: move the shared piece down"
    assert hidden == [] and never == []


def test_a_wing_says_what_it_is_for_and_imports_nothing():
    """Importing a wing costs nothing; its __init__ is the few lines a newcomer reads."""
    for wing in WINGS:
        tree = ast.parse(MODULES[wing].read_text())
        doc = ast.get_docstring(tree)
        assert doc and len(doc.splitlines()) >= 3, wing
        assert [n for n in tree.body if not isinstance(n, ast.Expr)] == [], wing
        modules = [m.split(".")[1] for m in ORDER if m.startswith(wing + ".")]
        assert all(f"``{m}``" in doc for m in modules), (wing, modules)


def test_each_module_has_a_test_file_that_says_so():
    """A maintainer finds a module's tests in tests/test_<module>.py, or in the file whose
    first line names it (``colabkit.colab.lease`` in test_storage.py's)."""
    tests = {p.stem.removeprefix("test_"): p.read_text(encoding="utf-8").splitlines()[0]
             for p in (REPO / "tests").glob("test_*.py")}
    named = set(re.findall(r"\bcolabkit\.([\w.]+\w)", " ".join(tests.values())))
    orphans = [m for m in ORDER if m.split(".")[-1] not in tests and m not in named]
    assert orphans == [], "name each module in the first line of the test file that holds it"


def test_no_module_passes_500_lines():
    sizes = {m: len(p.read_text().splitlines()) for m, p in MODULES.items()}
    assert {n: k for n, k in sizes.items() if k > 500} == {}


def test_no_two_modules_define_a_function_or_class_of_the_same_name():
    """One name, one meaning: two ``channel_stats`` (a data set's statistics from its
    images, and the loader's normalization tensors) took different inputs and gave different
    outputs, and a reader of one call could not tell which."""
    where: dict[str, list[str]] = {}
    for module, path in sorted(MODULES.items()):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                where.setdefault(node.name, []).append(module)
    assert {name: mods for name, mods in where.items() if len(mods) > 1} == {}


# "run" is a run: its folder (a RunDir) or its name; never the verb (run_epoch, gone) nor
# the parts a run trains with (train.Parts, once "Trainer", passed as `run`). Each run_*
# name of the package, with what it means:
RUN_NAMES = {"run_name": "a run's folder name", "run_status": "where a run stands",
             "run_queue": "a queue of runs, trained in turn",
             "run_growth": "Drive's growth beyond a run's own files",
             "_run_flags": "the flags of a run, shared by train and sweep",
             "run_loaders": "the loaders of a run's splits on the device"}


def test_run_in_a_name_means_a_run():
    unknown, not_a_folder = [], []
    for path in sorted(MODULES.values()):
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
    for node in ast.parse(MODULES[module].read_text()).body:
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
    defined = {m: _defined(m) for m in MODULES}
    passed_on, private = [], []
    files = [(m, p) for m, p in MODULES.items()] + [(None, p) for p in (REPO / "tests").glob("*.py")]
    for module_of_file, path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level >= 1 and module_of_file is not None and node.module:
                targets = _resolve(module_of_file, node)
                if {t.rpartition(".")[0] for t in targets} & set(WINGS) and \
                        all(t.rpartition(".")[2] in [a.name for a in node.names] for t in targets):
                    continue  # modules from a wing: from ..colab import quota
            elif node.level == 0 and (node.module or "").startswith("colabkit."):
                targets = {node.module.removeprefix("colabkit.")}
            else:
                continue
            if len(targets) != 1 or next(iter(targets)) not in defined or next(iter(targets)) in WINGS:
                continue  # modules from a wing
            module = next(iter(targets))
            names = [a.name for a in node.names]
            passed_on += [f"{path.name}: {n} from {module}" for n in names if n not in defined[module]]
            if module_of_file is not None:
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
    for path in sorted(MODULES.values()):
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
    block = block[block.index("```") + 3:]  # the second block: module by module
    block = block[block.index("```") + 3:]
    listed = re.findall(r"^    ([\w.]+) {2,}\S", block[:block.index("```")], re.M)
    assert listed == ORDER


def test_the_version_is_written_once():
    from colabkit import __version__
    from colabkit.version import __version__ as version
    assert __version__ == version
    toml = (REPO / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in toml and 'attr = "colabkit.version.__version__"' in toml
    project = toml[toml.index("[project]"):toml.index("\n[", toml.index("[project]"))]
    assert not re.search(r"^version\s*=", project, re.M)
    stated = [p for p in MODULES.values() if re.search(r'__version__\s*=\s*"', p.read_text())]
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
