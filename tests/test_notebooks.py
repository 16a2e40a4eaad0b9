"""The notebooks: stored clean, hold no logic, and run headless end to end (smoke runs:
synthetic data, a narrow network, a few epochs, CPU), including a resume after the
kernel is killed mid-training."""
import ast
import json
import os
import re
import shutil
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

from colabkit.rundir.runs import DETERMINISTIC_FIELDS, read_metrics

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
TRAINING = [p for p in NOTEBOOKS if p.name[:2] in ("01", "02", "03", "04")]
# TENSORBOARD: the cell prints where to point it, and starts no server in a test kernel
SMOKE = {"EPOCHS": 3, "DATASET": "synthetic", "ALLOW_CPU": True, "TRAIN_SIZE": 192,
         "TEST_SIZE": 64, "WIDTH": 4, "BATCH_SIZE": 32, "TENSORBOARD": False}
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


def _cell(path, needle):
    """The source of the first code cell of ``path`` that contains ``needle``."""
    nb = nbformat.read(path, as_version=4)
    return next(c.source for c in nb.cells if c.cell_type == "code" and needle in c.source)


def test_every_notebook_shares_one_setup_cell_and_the_training_ones_one_gpu_and_drive_cell():
    """One generator writes these cells into every notebook: so the kernel tests below run
    each of them in one notebook, and this test holds that the others carry the same text."""
    setups = {p.name: _cell(p, "REPO_URL =") for p in NOTEBOOKS}
    assert len(set(setups.values())) == 1, sorted(setups)
    gpu = [p for p in NOTEBOOKS if not p.name.startswith("05")]
    cells = {p.name: _cell(p, "colabkit.check_gpu(") for p in gpu}
    first = cells[gpu[0].name]
    head = first[:first.index("raise UsageError(str(e)) from None")]
    assert "allow_cpu=ALLOW_CPU" in head and head.index("check_gpu(") < head.index("mount_drive(")
    assert all(c.startswith(head) for c in cells.values()), cells
    for p in gpu:  # ALLOW_CPU is a form field of each, which the cell reads
        assert re.search(r"^ALLOW_CPU = False  #@param", _cell(p, "#@param"), re.M), p.name


@pytest.mark.integration
def test_the_setup_cell_stops_run_all_with_one_line_when_pip_cannot_install(tmp_path):
    """In Colab (google.colab imported), a REF that REPO_URL does not have: one line naming
    both and what to change, no pip output, and Run all stops there. (Every notebook has
    this cell: test_every_notebook_shares_one_setup_cell...)"""
    nb = nbformat.read(TRAINING[0], as_version=4)
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


def _with_parameters(path, params, pause_at=None, colab=None, epochs_logged=1):
    """Like papermill: a cell after the one tagged 'parameters' overrides its values. With
    ``pause_at=(run folder, marker)`` the kernel also arms tests/crash_child.py: once that
    run has logged ``epochs_logged`` epochs it writes ``marker`` and waits there to be
    killed. ``colab=(vm folder, host, boot id)``: the kernel is that Colab VM
    (tests/fake_colab.py), its working area in the VM."""
    nb = nbformat.read(path, as_version=4)
    i = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    src = "\n".join(f"{k} = {v!r}" for k, v in params.items())
    src += f"\nimport os, sys; sys.path.insert(0, {str(REPO / 'tests')!r})"
    if colab is not None:
        vm, host, boot = (str(x) for x in colab)
        src += (f"\nimport fake_colab; fake_colab.install({vm!r}, {host!r}, {boot!r})"
                f"\nos.environ['COLABKIT_LOCAL'] = {str(Path(vm) / 'content' / 'colabkit-local')!r}")
    if pause_at is not None:
        src += (f"\nimport crash_child"
                f"\ncrash_child.arm('pause', {epochs_logged}, {str(pause_at[0])!r}, {str(pause_at[1])!r})")
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
        params = {"TENSORBOARD": False} if path.name.startswith("05") else SMOKE
        nb = _with_parameters(path, params)
        _client(nb, home).execute()
        out[path.name] = nb
    return out


def _text(nb):
    return "".join(o.get("text", "") + json.dumps(o.get("data", {}).get("text/plain", ""))
                   for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


@pytest.mark.integration
@pytest.mark.parametrize("path", TRAINING, ids=lambda p: p.name)
def test_training_notebook_runs_headless_and_trains(executed, home, path):
    text = _text(executed[path.name])
    assert "finished: 3/3 epochs; best test accuracy" in text
    run = home / "runs" / f"{path.stem}-3ep"
    assert [r["epoch"] for r in read_metrics(run / "metrics.csv")] == [1, 2, 3]
    # where to point TensorBoard (a run folder outside Drive is its own working copy)
    assert f"%tensorboard --logdir {home / 'runs'} --detect_file_replacement=true (the run folders)" in text
    assert (run / "events.out.tfevents.colabkit").stat().st_size > 0
    # the live curves were drawn (one image, updated in place)
    train_cell = next(c for c in executed[path.name].cells if "colabkit.train(" in c.source)
    assert sum("image/png" in o.get("data", {}) for o in train_cell.outputs) == 1


@pytest.mark.integration
@pytest.mark.parametrize("present", [0, 1], ids=["no run", "one run"])
def test_report_notebook_runs_with_no_run_or_one_and_writes_before_it_shows(present, tmp_path, tiny,
                                                                          monkeypatch):
    """Run all on a Drive with no run yet, or with only model 1 done: every cell runs,
    the files are written, and the comparison cell says it needs two experiments."""
    if present:
        from colabkit.training.loop import train
        train(tiny("basic", epochs=2), tmp_path / "runs" / "01_resnet18_basic-2ep", progress=False)
    monkeypatch.setenv("COLABKIT_HOME", str(tmp_path))  # the kernel inherits it
    nb = _with_parameters(REPO / "notebooks" / "05_report.ipynb", {"TENSORBOARD": False})
    _client(nb, tmp_path).execute()
    text = _text(nb)
    assert "No comparison yet: comparisons need runs of two experiments" in text
    table1 = (tmp_path / "report" / "table1.md").read_text()
    if present:
        assert "| basic: resnet18 |" in table1
        assert (tmp_path / "report" / "fig12_test_acc.png").stat().st_size > 0
    else:
        assert table1.startswith("No run in") and "has finished an epoch yet" in table1


@pytest.mark.integration
def test_report_notebook_draws_from_the_four_runs(executed, home):
    text = _text(executed["05_report.ipynb"])
    for path in TRAINING:
        assert path.stem in text
    assert "fig12_test_acc.png" in text
    assert f"%tensorboard --logdir {home / 'runs'} --detect_file_replacement=true (the run folders)" in text
    rows = (home / "report" / "table1.md").read_text().splitlines()
    assert sum(row.startswith("| da") for row in rows) == 3  # da, da_cbam, da_cbam_aspp


@pytest.mark.integration
def test_notebook_02_resumes_after_the_kernel_dies_mid_training(executed, home, tmp_path):
    run = tmp_path / "runs" / "02_resnet18_da-3ep"
    params = {**SMOKE, "EPOCHS": 3}
    os.environ["COLABKIT_HOME"] = str(tmp_path)
    try:
        marker = tmp_path / "paused"
        nb = _with_parameters(REPO / "notebooks" / "02_resnet18_da.ipynb", params, (run, marker))
        _kill(*_run_until_paused(nb, tmp_path, marker))  # epoch 1 logged: the "disconnect"
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


@pytest.mark.integration
def test_queue_notebook_trains_four_runs_and_resumes_after_the_kernel_dies(tmp_path):
    old = os.environ.get("COLABKIT_HOME")
    os.environ["COLABKIT_HOME"] = str(tmp_path)
    path = REPO / "notebooks" / "00_run_all.ipynb"
    runs = tmp_path / "runs"
    try:
        marker = tmp_path / "paused"  # the first run finished, the second has logged one epoch
        nb = _with_parameters(path, SMOKE, (runs / QUEUE_RUNS[1], marker))
        _kill(*_run_until_paused(nb, tmp_path, marker))
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


# ------------------------------------------------- Colab as it really is ----

def _run_until_paused(nb, cwd, marker):
    """Run ``nb`` in a thread until its kernel writes ``marker``; returns (client, thread,
    errors) with the kernel waiting there."""
    client, died = _client(nb, cwd), []

    def run_all():
        try:
            client.execute()
        except DeadKernelError as e:  # the "disconnect"; any other error fails the test
            died.append(e)

    t = threading.Thread(target=run_all)
    t.start()
    _wait_for(marker, t)
    return client, t, died


def _kill(client, thread, died):
    client.km.provisioner.process.kill()  # like Colab dropping the runtime
    thread.join(600)
    assert died and isinstance(died[0], DeadKernelError), "the kernel should have died mid-run"


def _refused(nb, cwd) -> str:
    """Run all, which must stop at a cell with one line: that line."""
    with pytest.raises(CellExecutionError):
        _client(nb, cwd).execute()

    def said(cell):
        return "".join(o.get("text", "") for o in cell.outputs) + "".join(
            "\n".join(o.get("traceback", [])) for o in cell.outputs)
    stopped = [c for c in nb.cells if c.cell_type == "code" and "UsageError" in said(c)]
    assert len(stopped) == 1, [said(c) for c in nb.cells if c.cell_type == "code"]
    lines = said(stopped[0]).strip().splitlines()
    assert len(lines) == 1, lines  # IPython's UsageError: no traceback
    return lines[0]


@pytest.mark.integration
@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a CPU-only runtime")
def test_on_a_cpu_runtime_the_notebook_says_so_in_one_line_before_asking_for_drive(tmp_path):
    """In the queue notebook; the training notebooks share its GPU-and-Drive cell
    (test_every_notebook_shares_one_setup_cell...)."""
    from fake_colab import FakeColab

    path = REPO / "notebooks" / "00_run_all.ipynb"
    fake = FakeColab(tmp_path / "vm")
    nb = _with_parameters(path, {**SMOKE, "ALLOW_CPU": False}, colab=(tmp_path / "vm", "vm", "b"))
    line = _refused(nb, tmp_path)
    assert line.startswith("UsageError: This Colab runtime has no GPU: Runtime → Change runtime "
                           "type → T4 GPU"), line
    assert "usage limits, try again later, or tick ALLOW_CPU" in line
    assert fake.calls() == []  # Drive was never asked for


@pytest.mark.integration
def test_notebook_01_on_colab_resumes_after_a_disconnect_refuses_a_live_second_kernel_and_a_queue_survives_drive(tmp_path):
    """The main flow on Colab, with google.colab.drive as the real one behaves
    (tests/fake_colab.py): train; disconnect (the kernel dies, the working copy and the VM
    are gone: a new host and boot id); Run all refused at once, saying when the dead VM
    counts as gone; Run all after that limit resumes with no TAKEOVER, though its flush
    fails; a second live kernel on a folder is refused; the queue trains the rest with a
    browser that never answers, waiting no longer than colabkit's timeouts."""
    from fake_colab import FakeColab
    from colabkit.colab import drive
    from colabkit.colab.lease import STALE_EPOCHS, UPLOAD_LAG_S, Lease

    vm = tmp_path / "vm"
    fake = FakeColab(vm)
    path = REPO / "notebooks" / "01_resnet18_basic.ipynb"
    params = {**SMOKE, "MIRROR_MINUTES": 0}
    run = Path(fake.mountpoint) / "MyDrive" / "colabkit" / "runs" / "01_resnet18_basic-3ep"  # SMOKE: 3 epochs
    local = vm / "content" / "colabkit-local"
    # 1. train on VM a until epoch 2 is logged (epoch 1 is on Drive), then 2. "disconnect"
    marker = tmp_path / "paused"
    nb = _with_parameters(path, params, (path.stem, marker), colab=(vm, "vm-a", "boot-a"),
                          epochs_logged=2)
    _kill(*_run_until_paused(nb, tmp_path, marker))
    shutil.rmtree(local)
    fake.disconnect()
    record = json.loads((fake.cloud / "MyDrive" / "colabkit" / "runs" / run.name / "lease.json").read_text())
    assert record["host"] == "vm-a" and record["epoch_seconds"] > 0
    limit = Lease(tmp_path / "x").limit_seconds(record)
    assert limit == STALE_EPOCHS * record["epoch_seconds"] + UPLOAD_LAG_S
    # 3. Run all on VM b at once: refused, saying it is another runtime and when it counts as gone
    nb = _with_parameters(path, params, colab=(vm, "vm-b", "boot-b"))
    line = _refused(nb, tmp_path)
    assert line.startswith("UsageError: ") and "by another runtime (host vm-a" in line
    assert "Run all again in" in line and "tick TAKEOVER" in line and "--takeover" not in line
    # ... and once the dead VM has been silent for the limit (time passes: the heartbeat ages)
    record = json.loads((run / "lease.json").read_text())
    record["heartbeat_unix"] -= limit + 1
    (run / "lease.json").write_text(json.dumps(record))
    fake.set(flush="fail")  # model 1's stop: the flush fails
    nb = _with_parameters(path, params, colab=(vm, "vm-b", "boot-b"))
    _client(nb, tmp_path).execute()
    text = _text(nb)
    assert "has been silent for" in text and "Resuming" in text and "finished: 3/3 epochs" in text
    assert "Taking over" not in text
    assert "Drive: drive.flush_and_unmount failed" in text  # one warning, and Run all went on
    assert [r["epoch"] for r in read_metrics(run / "metrics.csv")] == [1, 2, 3]
    assert json.loads((run / "environment.json").read_text())["resumed_from_epoch"] == 1
    fake.set(flush="ok")
    # 4. a second live kernel on the same folder: refused, in other words than a dead VM's
    live = "live_run"
    marker = tmp_path / "paused-live"
    nb = _with_parameters(path, {**params, "RUN_NAME": live}, (live, marker), colab=(vm, "vm-b", "boot-b"))
    first = _run_until_paused(nb, tmp_path, marker)
    try:
        nb = _with_parameters(path, {**params, "RUN_NAME": live}, colab=(vm, "vm-b", "boot-b"))
        line = _refused(nb, tmp_path)
    finally:
        _kill(*first)
    assert "being trained right now by another notebook or process on this runtime" in line
    assert "tick TAKEOVER" in line and "--takeover" not in line and "another runtime" not in line
    # 5. + 6. the queue, the tab closed: nobody answers Drive's access request
    fake.set(browser="never")
    calls = len(fake.calls())
    queue = REPO / "notebooks" / "00_run_all.ipynb"
    nb = _with_parameters(queue, SMOKE, colab=(vm, "vm-b", "boot-b"))
    _client(nb, tmp_path).execute()
    text = _text(nb)
    # the remount failed: Drive is not mounted, and nothing was written to the VM's disk there
    assert not fake.state()["mounted"] and os.listdir(fake.mountpoint) == []
    on_drive = fake.cloud / "MyDrive" / "colabkit" / "runs"
    for name in QUEUE_RUNS[1:]:  # model 1 is done; models 2-4 trained
        assert f"{name}: finished" in text, text[-3000:]
        assert len(read_metrics(on_drive / name / "metrics.csv")) == 3
    made = fake.calls()[calls:]
    assert [c["call"] for c in made] == ["mount", "request_auth", "flush_and_unmount", "mount",
                                         "request_auth"]  # one flush, at the queue's end
    assert [c["waited_ms"] for c in made if c["call"] == "request_auth"] == \
        [drive.MOUNT_TIMEOUT_MS, drive.REMOUNT_TIMEOUT_MS]  # bounded by colabkit's timeouts
    assert made[2]["timeout_ms"] == drive.FLUSH_TIMEOUT_MS
    assert "Drive: the remount failed (mount failed) at the end of the queue" in text
    # 7. the status table once, naming every queued run
    assert len(re.findall(r"\brun +experiment +state\b", text)) == 1, text[:3000]
    for name, exp in zip(QUEUE_RUNS, ["basic", "da", "da_cbam", "da_cbam_aspp"]):
        rows = re.findall(rf"^ *{name} +(\S+) ", text, re.M)
        assert rows == [exp], (name, rows)
