"""bench/gpu_check.sh, the one command for a GPU machine, and bench/gpu_runs.py, its training
stages; rehearsed on the CPU: every stage runs end to end in the GPU's order with tiny sizes
and a Python without IPython, and writes its files. No time is asserted here (the stages'
times go to summary.txt and docs/benchmarks.md)."""
import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "gpu_check.sh"
sys.path.insert(0, str(REPO / "bench"))
import gpu_runs  # noqa: E402  (a bench script, not a module of the package)

sys.path.pop(0)
# the rehearsal runs a dozen Python processes: minutes on 2 busy cores, past the suite's
# 600 s per test when the cores are shared
pytestmark = pytest.mark.timeout(1800)
STAGES = ["machine", "pace", "accuracy-1", "accuracy-4", "speed", "cuda-tests", "bench", "seeds"]
FILES = ["bench.md", "cuda-tests.txt", "log.txt", "pace.csv", "runs.tar.gz", "speed.csv", "speed.md",
         "summary.txt"]  # at most 8 files come back from the device machine
STAGE_LINE = re.compile(r"^(\S+)\s+rc=(\S+)\s+([\d.]+) s  \(limit (\d+) s\)", re.M)


def _fake_python(tmp_path, body="exit 3"):
    """A python that builds the rehearsal's archive (``python -``) and runs ``body`` for
    every other command, logging each call to calls.txt."""
    fake = tmp_path / "python"
    fake.write_text(f'#!/bin/sh\n[ "$1" = "-" ] && exec {sys.executable} "$@"\n'
                    f'echo "$@" >> {tmp_path}/calls.txt\n{body}\n')
    fake.chmod(0o755)
    return fake


# ------------------------------------------------------- the script's shape ----

def test_the_stages_run_in_the_order_of_value_within_9_minutes():
    text = SCRIPT.read_text()
    calls = re.findall(r"^stage ([\w-]+) ", text, re.M)  # in the order they run
    assert calls == STAGES
    budget = int(re.search(r"^BUDGET=(\d+)$", text, re.M).group(1))
    # the budget, the kill's grace of the last stage and the collecting after it: under 9 min
    assert budget + 5 + 15 <= 9 * 60
    limits = dict(kv.split("=") for kv in re.search(r'^LIMITS="([^"]+)"', text, re.M).group(1).split())
    assert set(limits) == {"machine", "pace", "speed", "cuda-tests", "bench"}
    assert sum(int(v) for v in limits.values()) < budget  # the fixed stages leave room to train


def test_without_the_archive_the_first_line_says_so_and_nothing_runs(tmp_path):
    """No GPU minute is spent without the archive: the first line of the output and of
    summary.txt names it and what to do, and no Python command was started."""
    fake = _fake_python(tmp_path, body="exit 0")
    out = tmp_path / "out"
    missing = tmp_path / "nowhere" / "cifar10-jpeg.tar.gz"
    proc = subprocess.run(["bash", str(SCRIPT), str(out), str(missing)], capture_output=True, text=True,
                          env={**os.environ, "PYTHON": str(fake), "TMPDIR": str(tmp_path)}, timeout=60)
    first = proc.stdout.splitlines()[0]
    assert first.startswith(f"no archive at {missing}: nothing was run. Copy the CIFAR-10 JPEG archive")
    assert (out / "summary.txt").read_text().splitlines()[0] == first
    assert proc.returncode == 2
    assert not (tmp_path / "calls.txt").exists()  # not even the machine line
    assert not list(tmp_path.glob("colabkit-gpu-check.*"))  # its temporary folder removed


def test_a_stage_that_fails_makes_the_command_fail_and_the_others_still_run(tmp_path):
    """docs/benchmarks.md: the command exits non-zero when any stage fails. A Python that
    builds the rehearsal's archive and fails every other command (exit 3): each stage runs
    (the training stages under the fallback limits, the pace having failed), is marked rc=3
    in summary.txt, and the command's status is 1."""
    fake = _fake_python(tmp_path)
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(SCRIPT), "--rehearse", str(out)], capture_output=True, text=True,
                          env={**os.environ, "PYTHON": str(fake), "TMPDIR": str(tmp_path)}, timeout=300)
    ran = [(name, rc) for name, rc, _, _ in STAGE_LINE.findall((out / "summary.txt").read_text())]
    assert [name for name, _ in ran] == STAGES and {rc for _, rc in ran} == {"3"}, ran
    assert proc.returncode == 1, proc.stdout[-2000:]


def test_a_stage_that_writes_none_of_its_files_fails(tmp_path):
    """A stage whose command succeeds but writes nothing is marked rc=nofile, naming the
    file, and fails the command: a Python that succeeds at everything and writes nothing."""
    fake = _fake_python(tmp_path, body="exit 0")
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(SCRIPT), "--rehearse", str(out)], capture_output=True, text=True,
                          env={**os.environ, "PYTHON": str(fake), "TMPDIR": str(tmp_path)}, timeout=300)
    summary = (out / "summary.txt").read_text()
    ran = {name: rc for name, rc, _, _ in STAGE_LINE.findall(summary)}
    assert ran["machine"] == "nofile" and "wrote nothing to: summary.txt" in summary
    assert ran["pace"] == "nofile" and "wrote nothing to: pace.csv" in summary
    assert ran["accuracy-1"] == ran["accuracy-4"] == ran["seeds"] == "nofile"
    assert "wrote nothing to: speed.csv speed.md" in summary
    assert ran["cuda-tests"] == "nofile" and ran["bench"] == "nofile"
    assert proc.returncode == 1


# a Python that writes each stage's files, and a pace whose runs outlast the whole budget
OVERLONG_PACE = """all="$*"
echo ran
while [ $# -gt 1 ]; do case $1 in --work) work=$2;; --out) out=$2;; esac; shift; done
case "$all" in
  *"gpu_runs.py pace"*) printf 'LIMIT_basic=99999\\nLIMIT_da_cbam_aspp=99999\\n' > "$work/plan.env"
                        echo paced > "$out/pace.csv";;
  *gpu_speed.py*) echo row > "$out/speed.csv"; echo row > "$out/speed.md";;
  *bench/run.py*) echo table > "$out";;
esac
exit 0"""
# a Python that writes each stage's files; the pace's model 4 fits the budget, but not with
# the speed table and the cuda tests after it
CROWDING_PACE = OVERLONG_PACE.replace("LIMIT_basic=99999\\nLIMIT_da_cbam_aspp=99999", "LIMIT_basic=100\\nLIMIT_da_cbam_aspp=400").replace(
    '  *gpu_speed.py*)', '  *"gpu_runs.py train"*|*"gpu_runs.py seeds"*) echo run > "$out/runs.tar.gz";;\n  *gpu_speed.py*)')


def _on_the_gpu(tmp_path, body):
    """The check as on the GPU machine (no --rehearse, an archive in place) with a fake
    python running ``body``: (the process, summary.txt, {stage: rc})."""
    fake = _fake_python(tmp_path, body=body)
    archive = tmp_path / "cifar10-jpeg.tar.gz"
    archive.write_bytes(b"not read by the fake python")
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(SCRIPT), str(out), str(archive)], capture_output=True, text=True,
                          env={**os.environ, "PYTHON": str(fake), "TMPDIR": str(tmp_path)}, timeout=300)
    summary = (out / "summary.txt").read_text()
    return proc, summary, {name: rc for name, rc, _, _ in STAGE_LINE.findall(summary)}


def test_a_stage_whose_limit_does_not_fit_is_not_started_and_fails_the_command(tmp_path):
    """On the GPU (no --rehearse), a pace that predicts runs longer than the whole budget:
    neither training stage starts (rc=skip, saying what was left), nor the seeds; every
    other stage runs and writes its files; the skipped training stages fail the command."""
    proc, summary, ran = _on_the_gpu(tmp_path, OVERLONG_PACE)
    assert ran == {**dict.fromkeys(STAGES, "0"), "accuracy-1": "skip", "accuracy-4": "skip",
                   "seeds": "skip"}, summary
    assert re.search(r"^accuracy-1\s+rc=skip .*\(limit 99999 s\): not started: \d+ s of the budget left, "
                     r"140 s of it kept for the speed table and the cuda tests$",
                     summary, re.M), summary
    assert "gpu_runs.py train" not in (tmp_path / "calls.txt").read_text()
    assert proc.returncode == 1 and summary.splitlines()[-1].endswith("exit status 1")


def test_a_run_short_of_its_epochs_is_not_collected(tmp_path):
    run = tmp_path / "runs" / "basic-fast-s0"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"epochs": 3}))
    (run / "metrics.csv").write_text("epoch,seconds\n1,1.0\n2,1.0\n")
    for name in ("environment.json", "predictions.npz"):
        (run / name).write_text("{}")
    with pytest.raises(RuntimeError, match=r"basic-fast-s0 did not finish \(2/3 epochs"):
        gpu_runs.collect(run, tmp_path, "python -m colabkit train ...")
    (run / "metrics.csv").write_text("epoch,seconds\n1,1.0\n2,1.0\n3,1.0\n")
    (run / "predictions.npz").unlink()
    with pytest.raises(RuntimeError, match="missing: predictions.npz"):
        gpu_runs.collect(run, tmp_path, "python -m colabkit train ...")
    assert not (tmp_path / "collect").exists()


# ----------------------------------------------------------- the pace's plan ----

def test_the_pace_predicts_a_full_run_from_two_epochs():
    # 1,000 images at 500 images/s take 2 s of an epoch's 3 s: 1 s of evaluation; the
    # first epoch is 2 s longer (warm-up); 10 s of the process's 15 s are neither epoch
    rows = [{"seconds": "5", "images_per_s": "400"}, {"seconds": "3", "images_per_s": "500"}]
    p = gpu_runs.predict(rows, wall_s=18.0, paced_images=1000, train_images=45_000, epochs=30)
    assert p["eval_s"] == pytest.approx(1.0) and p["warmup_s"] == pytest.approx(2.0)
    assert p["overhead_s"] == pytest.approx(10.0)
    assert p["epoch_s"] == pytest.approx(45_000 / 500 + 1.0)
    assert p["predicted_s"] == pytest.approx(10 + 2 + 30 * 91)
    assert gpu_runs.stage_limit(100.0) == 150 and gpu_runs.stage_limit(100.0, scale=4) == 600


def test_a_full_run_is_the_training_split_less_the_validation_split():
    data = {"train_images": 50_000}
    assert gpu_runs.full_run(["--val-size", "5000", "--quiet"], data) == (45_000, 30)
    assert gpu_runs.full_run(["--val-size", "12", "--train-size", "48", "--epochs", "2"], {"train_images": 72}) == (48, 2)
    assert gpu_runs.full_run(["--epochs", "3", "--epochs", "5"], data) == (50_000, 5)  # argparse: last wins


def test_more_seeds_start_only_while_their_limit_fits(monkeypatch, tmp_path):
    """Nothing starts that cannot end: with 100 s and runs whose limits are 60 s and 80 s,
    model 1's second seed runs (60 s), then neither fits in the 40 s left."""
    clock = [0.0]
    started = []

    def fake_run(experiment, seed, work, out, flags, timeout=None):
        started.append((experiment, seed, timeout))
        clock[0] += timeout

    monkeypatch.setattr(gpu_runs.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(gpu_runs, "train_to_end", fake_run)
    (tmp_path / "plan.env").write_text("LIMIT_basic=60\nLIMIT_da_cbam_aspp=80\n")
    assert gpu_runs.main(["seeds", "--work", str(tmp_path), "--out", str(tmp_path), "--budget-s", "100",
                          "--max-seeds", "3", "--", "--quiet"]) == 0
    assert started == [("basic", 1, 60)]
    clock[0], started[:] = 0.0, []
    assert gpu_runs.main(["seeds", "--work", str(tmp_path), "--out", str(tmp_path), "--budget-s", "300",
                          "--max-seeds", "3", "--", "--quiet"]) == 0
    assert started == [("basic", 1, 60), ("da_cbam_aspp", 1, 80), ("basic", 2, 60), ("da_cbam_aspp", 2, 80)]


def test_only_cifar_10_in_full_is_called_cifar_10():
    classes = gpu_runs.CIFAR10
    assert gpu_runs.describe_data(classes, 50_000, 10_000, "data/c.tar.gz") == "CIFAR-10"
    assert gpu_runs.describe_data(classes, 5_000, 1_000, "data/c.tar.gz") == \
        "c.tar.gz: 10 classes, 5,000 training and 1,000 test images"
    assert gpu_runs.describe_data(classes[:9] + ("fish",), 50_000, 10_000, "x.tar.gz").startswith("x.tar.gz: 10")


def test_the_t4_estimate_is_the_measured_share_of_peak_at_a_t4s_peak(tmp_path):
    speed = tmp_path / "speed.csv"
    with open(speed, "w", newline="") as f:
        w = csv.DictWriter(f, ["model", "net", "precision", "batch", "mode", "tflops", "gflop_per_step",
                               "share_of_peak"])
        w.writeheader()
        w.writerow(dict(model="1", net="resnet18", precision="fp16", batch="256", mode="eager", tflops="98.9",
                        gflop_per_step="512", share_of_peak="0.1"))
        w.writerow(dict(model="1", net="resnet18", precision="bf16", batch="256", mode="eager", tflops="200",
                        gflop_per_step="512", share_of_peak="0.2"))  # not the T4's path
    est = gpu_runs.t4_estimates(speed)
    assert list(est) == ["resnet18"]
    assert est["resnet18"]["tflops"] == pytest.approx(6.5) and est["resnet18"]["gflop_per_image"] == 2.0
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"epochs": 30, "tta": True}))
    (run / "environment.json").write_text(json.dumps({"train_images": 45_000, "val_images": 5_000,
                                                      "test_images": 10_000}))
    # 30 x 2 GFLOP x (45,000 + (5,000 + 10,000) x 2 / 3) = 3.3 PFLOP
    assert gpu_runs.run_gflop(run, 2.0) == pytest.approx(30 * 2 * 55_000)
    assert gpu_runs.t4_estimates(tmp_path / "none.csv") == {}


def test_the_results_row_says_what_the_runs_are_not_and_labels_the_t4_estimate(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"width": 64, "epochs": 30}))
    (tmp_path / "environment.json").write_text(json.dumps({
        "data": "CIFAR-10", "gpu": "NVIDIA H200", "train_images": 45_000, "val_images": 5_000}))
    results = [{"experiment": "basic", "test_acc": 93.5, "test_acc_tta": 94.0, "t4_min": 7.0},
               {"experiment": "basic", "test_acc": 93.9, "test_acc_tta": 94.2, "t4_min": 7.2},
               {"experiment": "da_cbam_aspp", "test_acc": 92.8, "test_acc_tta": 93.1, "t4_min": None}]
    row = gpu_runs.results_row(results, tmp_path, "2026-12-06")
    assert row.startswith("| The fast recipe to the end: test accuracy `basic` 94.10 ± 0.14% with flip TTA "
                          "(93.70 ± 0.28% plain, 2 seeds); `da_cbam_aspp` 93.10% with flip TTA (92.80% plain) | ")
    assert ("| CIFAR-10, not the report's CIFAR-12; full width, 45,000 training images and a 5,000-image "
            "validation split, 30 epochs; on an NVIDIA H200, not a T4 (a T4 run, estimated: `basic` 7 min); "
            "2026-12-06 |") in row
    assert row.count("|") == 4  # one table row of three cells


# --------------------------------------------------------------- rehearsal ----

@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-check")
    env = {**os.environ, "PYTHON": sys.executable, "TMPDIR": str(out.parent)}
    proc = subprocess.run(["bash", str(SCRIPT), "--rehearse", str(out)], env=env, capture_output=True,
                          text=True, timeout=2200)
    return proc, out


def _runs(out) -> dict[str, bytes]:
    with tarfile.open(out / "runs.tar.gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}


@pytest.mark.integration
def test_the_rehearsal_runs_every_stage_in_order_and_each_writes_its_files(rehearsal):
    proc, out = rehearsal
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:] + (out / "log.txt").read_text()[-3000:]
    summary = (out / "summary.txt").read_text()
    print(summary)  # each stage's time, for the record
    assert summary.splitlines()[0].startswith("archive: ") and proc.stdout.startswith("archive: ")
    ran = STAGE_LINE.findall(summary)
    assert [(name, rc) for name, rc, _, _ in ran] == [(s, "0") for s in STAGES]  # none skipped
    assert sorted(p.name for p in out.iterdir()) == FILES
    assert "IPython loaded: False" in summary  # a bare GPU machine's Python: no IPython
    assert "data: tiny-cifar.tar.gz: 3 classes, 72 training and 24 test images" in summary
    # the pace set the training stages' limits
    pace = {r["experiment"]: r for r in csv.DictReader(open(out / "pace.csv"))}
    limits = {name: int(lim) for name, _, _, lim in ran}
    assert limits["accuracy-1"] == int(pace["basic"]["limit_s"])
    assert limits["accuracy-4"] == int(pace["da_cbam_aspp"]["limit_s"])
    assert {r["full_train_images"] for r in pace.values()} == {"48"}  # 72 less 12 for validation, --train-size 48
    assert {r["paced_images"] for r in pace.values()} == {"24"}


@pytest.mark.integration
def test_the_rehearsal_brings_back_the_four_files_of_each_finished_run(rehearsal):
    _, out = rehearsal
    files = _runs(out)
    runs = ["basic-fast-2ep-s0", "basic-fast-2ep-s1", "da_cbam_aspp-fast-2ep-s0", "da_cbam_aspp-fast-2ep-s1"]
    four = ["config.json", "environment.json", "metrics.csv", "predictions.npz"]  # no checkpoint
    assert sorted(files) == ["README.md"] + [f"{r}/{n}" for r in runs for n in four]
    summary = (out / "summary.txt").read_text()
    for run in runs:
        cfg = json.loads(files[f"{run}/config.json"])
        assert (cfg["recipe"], cfg["epochs"], cfg["val_size"], cfg["tta"]) == ("fast", 2, 12, True)
        rows = list(csv.DictReader(io.StringIO(files[f"{run}/metrics.csv"].decode())))
        assert [r["epoch"] for r in rows] == ["1", "2"] and all(r["test_acc_tta"] for r in rows)
        env = json.loads(files[f"{run}/environment.json"])
        assert env["data"] == "tiny-cifar.tar.gz: 3 classes, 72 training and 24 test images"
        assert (env["train_images"], env["val_images"], env["test_images"]) == (48, 12, 24)
        assert re.search(rf"^{run}: test accuracy [\d.]+% plain; with flip TTA [\d.]+%, at epoch \d/2 "
                         r"\(chosen on validation\)", summary, re.M), run
    readme = files["README.md"].decode()
    assert "Machine: no GPU (cpu)" in readme and "--seed 1 --run-dir runs/da_cbam_aspp-fast-2ep-s1" in readme
    assert "No T4 estimate" in readme  # a CPU has no peak to take a share of
    row = next(line for line in readme.splitlines() if line.startswith("| The fast recipe to the end"))
    assert re.search(r"`basic` [\d.]+ ± [\d.]+% with flip TTA \([\d.]+ ± [\d.]+% plain, 2 seeds\); "
                     r"`da_cbam_aspp` ", row), row
    assert "| tiny-cifar.tar.gz: 3 classes, 72 training and 24 test images, not the report's CIFAR-12; " \
           "width 4, 48 training images and a 12-image validation split, 2 epochs; on a CPU, not a T4; " in row


@pytest.mark.integration
def test_the_rehearsal_measured_both_models_eager_and_compiled(rehearsal):
    _, out = rehearsal
    rows = list(csv.DictReader(open(out / "speed.csv")))
    measured = {(r["model"], r["precision"], r["mode"]) for r in rows if r["images_per_s"]}
    assert {("1", "fp16", "eager"), ("1", "bf16", "eager"), ("4", "fp16", "eager"),
            ("4", "bf16", "eager"), ("1", "fp16", "compiled"), ("4", "bf16", "compiled")} == measured
    assert all(float(r["gflop_per_step"]) > 0 for r in rows if r["images_per_s"])
    assert "| 1 (resnet18) | fp16 | 2 | eager |" in (out / "speed.md").read_text()
    assert "cuda" in (out / "cuda-tests.txt").read_text()  # collected; skipped on the CPU
    bench = (out / "bench.md").read_text()
    assert "augmentation" in bench and "Drive footprint" in bench


@pytest.mark.integration
def test_make_figures_draws_the_gpu_runs_and_table_1_labels_them(rehearsal, tmp_path):
    """The rehearsal's runs unpacked as logs/gpu/ (beside a copy of logs/basic), their
    environment.json saying what a run on an H200 says: `make figures` draws figures/gpu/,
    and Table 1 labels its rows as CIFAR-10 on an H200; the CPU logs keep their label."""
    _, out = rehearsal
    logs = tmp_path / "logs"
    (logs / "gpu").mkdir(parents=True)
    with tarfile.open(out / "runs.tar.gz") as tar:
        tar.extractall(logs / "gpu", filter="data")
    shutil.copytree(REPO / "logs" / "basic", logs / "basic")
    from colabkit.report.tables import load_runs, results_table, table_markdown
    as_run = table_markdown(results_table(load_runs(logs / "gpu")))  # the CPU's own record
    assert as_run.count("| tiny-cifar.tar.gz: 3 classes, 72 training and 24 test images, not comparable "
                        "with the report's CIFAR-12 |") == 2 and " on " not in as_run.split("\n", 2)[2]
    for env_path in (logs / "gpu").glob("*/environment.json"):
        env = json.loads(env_path.read_text())
        env.update(data="CIFAR-10", gpu="NVIDIA H200", device="cuda:0", precision="bf16")
        env_path.write_text(json.dumps(env))
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / ".installed").touch()  # newer than pyproject.toml: make installs nothing
    figures = tmp_path / "figures"
    proc = subprocess.run(["make", "-C", str(REPO), "figures", f"PY={sys.executable}", f"VENV={venv}",
                           f"LOGS={logs}", f"FIGURES={figures}"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    table = (figures / "gpu" / "table1.md").read_text()
    label = "| CIFAR-10 on NVIDIA H200, not comparable with the report's CIFAR-12 |"
    assert table.count(label) == 2 and "| basic-fast: resnet18 |" in table
    assert "| da_cbam_aspp-fast: resnet18_cbam_aspp |" in table
    assert (figures / "gpu" / "fig12_test_acc.png").stat().st_size > 0
    top = (figures / "table1.md").read_text()
    assert "H200" not in top and "not comparable (other data, width, epochs or recipe)" in top
    assert not (figures / "ablations").exists()  # no logs/ablations here: that set is skipped


def test_the_training_stages_leave_room_for_the_speed_table_and_the_cuda_tests(tmp_path):
    """On the GPU: model 4's run (400 s) would fit what is left of the 510 s budget, but
    not with the speed table's 40 s and the cuda tests' 90 s after it. It is not started,
    saying so; the speed table and the cuda tests run; the runs' README is packed again
    after the speed table (its T4 estimate comes from it)."""
    proc, summary, ran = _on_the_gpu(tmp_path, CROWDING_PACE)
    assert ran["accuracy-1"] == "0" and ran["accuracy-4"] == "skip", summary
    assert ran["speed"] == ran["cuda-tests"] == "0"
    assert re.search(r"^accuracy-4\s+rc=skip .*\(limit 400 s\): not started: \d+ s of the budget left, "
                     r"140 s of it kept for the speed table and the cuda tests$", summary, re.M), summary
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    speed = next(i for i, c in enumerate(calls) if "gpu_speed.py" in c)
    pack = next(i for i, c in enumerate(calls) if "gpu_runs.py pack" in c)
    cuda = next(i for i, c in enumerate(calls) if "-m pytest -m cuda" in c)
    assert speed < pack < cuda
    assert proc.returncode == 1  # model 4 was not trained: the check did not do its job
