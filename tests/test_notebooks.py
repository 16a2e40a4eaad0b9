"""The notebooks: stored clean, hold no logic, and run headless end to end (smoke runs:
synthetic data, a narrow network, a few epochs, CPU), including a resume after the
kernel is killed mid-training."""
import ast
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
from IPython.core.inputtransformer2 import TransformerManager
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, DeadKernelError

from colabkit.runs import DETERMINISTIC_FIELDS, read_metrics

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
TRAINING = [p for p in NOTEBOOKS if p.name[:2] in ("01", "02", "03", "04")]
SMOKE = {"EPOCHS": 3, "DATASET": "synthetic", "ALLOW_CPU": True, "TRAIN_SIZE": 192,
         "TEST_SIZE": 64, "WIDTH": 4, "BATCH_SIZE": 32}
# a smoke run's length is not the recipe's 300: its folder says so (a trial never becomes
# the full run)
QUEUE_RUNS = [f"{p.stem}-3ep" for p in TRAINING]


def test_there_are_four_numbered_training_notebooks_and_a_report():
    assert [p.name for p in NOTEBOOKS] == [
        "00_run_all.ipynb", "01_resnet18_basic.ipynb", "02_resnet18_da.ipynb", "03_resnet18_da_cbam.ipynb",
        "04_resnet18_da_cbam_aspp.ipynb", "05_report.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs_and_without_logic(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    params = [c for c in code if "parameters" in c["metadata"].get("tags", [])]
    assert len(params) == 1 and "#@param" in "".join(params[0]["source"])
    assert "colab-badge.svg" in "".join(nb["cells"][0]["source"])
    for c in code:
        tree = ast.parse(TransformerManager().transform_cell("".join(c["source"])))  # IPython syntax
        assert not [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.Lambda))]


def test_committed_notebooks_are_what_the_generator_writes():
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import make_notebooks
    finally:
        sys.path.pop(0)
    for name, text in make_notebooks.render().items():
        assert (REPO / "notebooks" / name).read_text(encoding="utf-8") == text, \
            f"{name} differs: run python tools/make_notebooks.py"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_the_setup_cell_stops_run_all_with_one_line_when_pip_cannot_install(path, tmp_path):
    """In Colab (google.colab imported), a REF that REPO_URL does not have: one line naming
    both and what to change, no pip output, and Run all stops there."""
    nb = nbformat.read(path, as_version=4)
    setup = next(c for c in nb.cells if c.cell_type == "code" and "REPO_URL =" in c.source)
    # a fork that exists but was never tagged: the notebook's REF is not there
    repo = tmp_path / "fork"
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
    repo.mkdir()
    subprocess.run(git[:5] + ["init", "-q", str(repo)], check=True)
    (repo / "README.md").write_text("a fork\n")
    subprocess.run(git + ["add", "README.md"], check=True)
    subprocess.run(git + ["commit", "-qm", "first"], check=True)
    fork = repo.as_uri()
    source = "\n".join(f'REPO_URL = "{fork}"' if line.startswith("REPO_URL =") else line
                       for line in setup.source.splitlines())
    assert source != setup.source
    marker = tmp_path / "went-on"
    nb.cells = [nbformat.v4.new_code_cell("import sys, types\n"
                                          "sys.modules['google.colab'] = types.ModuleType('google.colab')"),
                nbformat.v4.new_code_cell(source),
                nbformat.v4.new_code_cell(f"open({str(marker)!r}, 'w').close()")]
    with pytest.raises(CellExecutionError):
        _client(nb, tmp_path).execute()
    assert not marker.exists()  # Run all stopped at the setup cell
    outputs = nb.cells[1].outputs
    text = "".join(o.get("text", "") for o in outputs) + "".join(
        "\n".join(o.get("traceback", [])) for o in outputs)
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    ref = next(l.split('"')[1] for l in source.splitlines() if l.startswith("REF ="))
    assert lines[0].startswith("UsageError: pip could not install colabkit") and ref in lines[0] and fork in lines[0]
    assert "set REF to a tag or commit" in lines[0]
    # pip's output is kept in the log, not shown: git's own word on the missing tag
    assert f"pathspec '{ref}' did not match" in Path("/tmp/colabkit-pip.log").read_text()


def _with_parameters(path, params, pause_at=None):
    """Like papermill: a cell after the one tagged 'parameters' overrides its values. With
    ``pause_at=(run folder, marker)`` the kernel also arms tests/crash_child.py: once that
    run has logged one epoch it writes ``marker`` and waits there to be killed."""
    nb = nbformat.read(path, as_version=4)
    i = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    src = "\n".join(f"{k} = {v!r}" for k, v in params.items())
    if pause_at is not None:
        src += (f"\nimport sys; sys.path.insert(0, {str(REPO / 'tests')!r}); import crash_child"
                f"\ncrash_child.arm('pause', 1, {str(pause_at[0])!r}, {str(pause_at[1])!r})")
    nb.cells.insert(i + 1, nbformat.v4.new_code_cell(src, metadata={"tags": ["injected-parameters"]}))
    return nb


def _wait_for(marker, thread, limit=600):
    """Until the kernel has written ``marker``; the limit only ends a hung test."""
    deadline = time.time() + limit
    while not marker.exists():
        assert thread.is_alive(), "the notebook ended before the event"
        assert time.time() < deadline, "the notebook never reached the event"
        time.sleep(0.02)


def _client(nb, cwd):
    return NotebookClient(nb, timeout=600, kernel_name="python3",
                          resources={"metadata": {"path": str(cwd)}})


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    old = {k: os.environ.get(k) for k in ("COLABKIT_HOME",)}
    os.environ["COLABKIT_HOME"] = str(home)  # the kernels inherit it
    yield home
    for k, v in old.items():
        if v is None:
            os.environ.pop(k)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def executed(home):
    """Every notebook run headless in order (01-04 train, 05 reports on them)."""
    out = {}
    for path in [*TRAINING, REPO / "notebooks" / "05_report.ipynb"]:
        params = {} if path.name.startswith("05") else SMOKE
        nb = _with_parameters(path, params)
        _client(nb, home).execute()
        out[path.name] = nb
    return out


def _text(nb):
    return "".join(o.get("text", "") + json.dumps(o.get("data", {}).get("text/plain", ""))
                   for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


@pytest.mark.parametrize("path", TRAINING, ids=lambda p: p.name)
def test_training_notebook_runs_headless_and_trains(executed, home, path):
    text = _text(executed[path.name])
    assert "finished: 3/3 epochs; best test accuracy" in text
    run = home / "runs" / f"{path.stem}-3ep"
    assert [r["epoch"] for r in read_metrics(run / "metrics.csv")] == [1, 2, 3]
    # the live curves were drawn (one image, updated in place)
    train_cell = next(c for c in executed[path.name].cells if "colabkit.train(" in c.source)
    assert sum("image/png" in o.get("data", {}) for o in train_cell.outputs) == 1


@pytest.mark.parametrize("present", [0, 1], ids=["no run", "one run"])
def test_report_notebook_runs_with_no_run_or_one_and_writes_before_it_shows(present, tmp_path, tiny):
    """Run all on a Drive with no run yet, or with only model 1 done: every cell runs,
    the files are written, and the comparison cell says it needs two experiments."""
    if present:
        from colabkit.train import train
        train(tiny("basic", epochs=2), tmp_path / "runs" / "01_resnet18_basic-2ep", progress=False)
    old = os.environ.get("COLABKIT_HOME")
    os.environ["COLABKIT_HOME"] = str(tmp_path)
    try:
        nb = _with_parameters(REPO / "notebooks" / "05_report.ipynb", {})
        _client(nb, tmp_path).execute()
    finally:
        if old is None:
            os.environ.pop("COLABKIT_HOME", None)
        else:
            os.environ["COLABKIT_HOME"] = old
    text = _text(nb)
    assert "No comparison yet: comparisons need runs of two experiments" in text
    table1 = (tmp_path / "report" / "table1.md").read_text()
    if present:
        assert "| basic: resnet18 |" in table1
        assert (tmp_path / "report" / "fig12_test_acc.png").stat().st_size > 0
    else:
        assert table1.startswith("No run in") and "has finished an epoch yet" in table1


def test_report_notebook_draws_from_the_four_runs(executed, home):
    text = _text(executed["05_report.ipynb"])
    for path in TRAINING:
        assert path.stem in text
    assert "fig12_test_acc.png" in text
    rows = (home / "report" / "table1.md").read_text().splitlines()
    assert sum(row.startswith("| da") for row in rows) == 3  # da, da_cbam, da_cbam_aspp


def test_notebook_02_resumes_after_the_kernel_dies_mid_training(executed, home, tmp_path):
    run = tmp_path / "runs" / "02_resnet18_da-3ep"
    params = {**SMOKE, "EPOCHS": 3}
    os.environ["COLABKIT_HOME"] = str(tmp_path)
    try:
        marker = tmp_path / "paused"
        nb = _with_parameters(REPO / "notebooks" / "02_resnet18_da.ipynb", params, (run, marker))
        client = _client(nb, tmp_path)
        died = []

        def run_all():
            try:
                client.execute()
            except DeadKernelError as e:  # the "disconnect"; any other error fails the test
                died.append(e)

        t = threading.Thread(target=run_all)
        t.start()
        _wait_for(marker, t)  # epoch 1 logged: the kernel waits there
        client.km.provisioner.process.kill()  # like Colab dropping the runtime
        t.join(600)
        assert died and isinstance(died[0], DeadKernelError), "the kernel should have died mid-run"
        assert len(read_metrics(run / "metrics.csv")) == 1
        # Run all again
        nb = _with_parameters(REPO / "notebooks" / "02_resnet18_da.ipynb", params)
        _client(nb, tmp_path).execute()
    finally:
        os.environ["COLABKIT_HOME"] = str(home)
    assert "Resuming" in _text(nb) and "finished: 3/3 epochs" in _text(nb)
    got = read_metrics(run / "metrics.csv")
    want = read_metrics(home / "runs" / "02_resnet18_da-3ep" / "metrics.csv")
    assert [{k: r[k] for k in DETERMINISTIC_FIELDS} for r in got] == \
        [{k: r[k] for k in DETERMINISTIC_FIELDS} for r in want]


def test_only_the_report_notebook_asks_colab_for_no_gpu():
    for path in NOTEBOOKS:
        meta = json.loads(path.read_text())["metadata"]
        wants_gpu = meta.get("accelerator") == "GPU" and meta["colab"].get("gpuType") == "T4"
        assert wants_gpu == (not path.name.startswith("05")), path.name


def test_setup_cell_installs_a_pinned_release():
    for path in NOTEBOOKS:
        src = "".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"])
        assert 'REF = "v' in src and '@{REF}' in src, path.name


def test_queue_notebook_trains_four_runs_and_resumes_after_the_kernel_dies(tmp_path):
    old = os.environ.get("COLABKIT_HOME")
    os.environ["COLABKIT_HOME"] = str(tmp_path)
    path = REPO / "notebooks" / "00_run_all.ipynb"
    runs = tmp_path / "runs"
    try:
        marker = tmp_path / "paused"  # the first run finished, the second has logged one epoch
        nb = _with_parameters(path, SMOKE, (runs / QUEUE_RUNS[1], marker))
        client = _client(nb, tmp_path)
        died = []

        def run_all():
            try:
                client.execute()
            except DeadKernelError as e:
                died.append(e)

        t = threading.Thread(target=run_all)
        t.start()
        _wait_for(marker, t)
        client.km.provisioner.process.kill()
        t.join(600)
        assert died and isinstance(died[0], DeadKernelError)
        first = (runs / QUEUE_RUNS[0] / "last.pt").stat().st_mtime_ns
        assert len(read_metrics(runs / QUEUE_RUNS[0] / "metrics.csv")) == 3
        assert len(read_metrics(runs / QUEUE_RUNS[1] / "metrics.csv")) == 1
        nb = _with_parameters(path, SMOKE)  # Run all again, in a new session
        _client(nb, tmp_path).execute()
    finally:
        if old is None:
            os.environ.pop("COLABKIT_HOME", None)
        else:
            os.environ["COLABKIT_HOME"] = old
    text = _text(nb)
    assert "finished" in text and "stalled" in text and "not started" in text  # the table first
    for name in QUEUE_RUNS:
        assert [r["epoch"] for r in read_metrics(runs / name / "metrics.csv")] == [1, 2, 3], name
    assert (runs / QUEUE_RUNS[0] / "last.pt").stat().st_mtime_ns == first  # skipped, untouched
