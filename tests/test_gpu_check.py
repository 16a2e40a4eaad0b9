"""bench/gpu_check.sh, the one command for a GPU machine, rehearsed on the CPU: every
stage runs end to end with tiny sizes and a Python without IPython, and writes its files.
Its limits on the GPU add up to under 7 minutes; no time is asserted here."""
import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "gpu_check.sh"
# the rehearsal runs a dozen Python processes: minutes on 2 busy cores, past the suite's
# 600 s per test when the cores are shared
pytestmark = pytest.mark.timeout(1800)
STAGES = ["machine", "speed", "cuda-tests", "pace", "recipe-fast", "recipe-report", "table", "bench"]


def test_the_stage_limits_add_up_to_under_7_minutes_in_the_order_of_value():
    text = SCRIPT.read_text()
    limits = dict(kv.split("=") for kv in re.search(r'^LIMITS="([^"]+)"', text, re.M).group(1).split())
    assert list(limits) == STAGES
    assert sum(int(v) for v in limits.values()) < 7 * 60
    calls = re.findall(r"^\s*stage ([\w$-]+) ", text, re.M)  # in the order they run
    assert calls == ["machine", "speed", "cuda-tests", "pace", "recipe-$recipe", "table", "bench"]


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-check")
    env = {**os.environ, "PYTHON": sys.executable, "TMPDIR": str(out.parent)}
    proc = subprocess.run(["bash", str(SCRIPT), "--rehearse", str(out)], env=env, capture_output=True,
                          text=True, timeout=1500)
    return proc, out


@pytest.mark.integration
def test_the_rehearsal_runs_every_stage_and_writes_every_file(rehearsal):
    proc, out = rehearsal
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:] + (out / "log.txt").read_text()[-3000:]
    summary = (out / "summary.txt").read_text()
    print(summary)  # each stage's time, for the record
    ran = re.findall(r"^(\S+)\s+rc=(\d+)\s+([\d.]+) s", summary, re.M)
    assert [(name, rc) for name, rc, _ in ran] == [(s, "0") for s in STAGES]
    files = sorted(p.name for p in out.iterdir())
    assert files == ["bench.md", "cuda-tests.txt", "log.txt", "recipes.md", "speed.csv", "speed.md",
                     "summary.txt"]  # at most 8 files come back from the device
    log = (out / "log.txt").read_text()
    assert "IPython loaded: False" in log  # a bare GPU machine's Python: no IPython


@pytest.mark.integration
def test_the_rehearsal_measured_both_models_eager_and_compiled(rehearsal):
    _, out = rehearsal
    rows = list(csv.DictReader(open(out / "speed.csv")))
    measured = {(r["model"], r["precision"], r["mode"]) for r in rows if r["images_per_s"]}
    assert {("1", "fp16", "eager"), ("1", "bf16", "eager"), ("4", "fp16", "eager"),
            ("4", "bf16", "eager"), ("1", "fp16", "compiled"), ("4", "bf16", "compiled")} == measured
    assert all(float(r["gflop_per_step"]) > 0 for r in rows if r["images_per_s"])
    assert "| 1 (resnet18) | fp16 | 2 | eager |" in (out / "speed.md").read_text()


@pytest.mark.integration
def test_the_rehearsal_trains_both_recipes_into_one_table_without_the_pace_run(rehearsal):
    _, out = rehearsal
    recipes = (out / "recipes.md").read_text()
    table = recipes[recipes.index("|"):recipes.index("```")]
    assert "basic" in table and "fast" in table
    assert "pace" not in recipes  # the pace run is no row of the pair's Table 1
    runs = recipes[recipes.index("```") + 3:].split("```")[0].strip().splitlines()
    assert len(runs) == 3  # header + the two recipes' runs
    assert "cuda" in (out / "cuda-tests.txt").read_text()  # collected; skipped on the CPU
    bench = (out / "bench.md").read_text()
    assert "augmentation" in bench and "Drive footprint" in bench


def test_a_stage_that_fails_makes_the_command_fail_and_the_others_still_run(tmp_path):
    """docs/benchmarks.md: the command exits non-zero when any stage fails. A Python that
    builds the rehearsal's archive (``python -``) and fails every other command (exit 3):
    each stage runs, is marked rc=3 in summary.txt, and the command's status is 1."""
    fake = tmp_path / "python"
    fake.write_text(f'#!/bin/sh\n[ "$1" = "-" ] && exec {sys.executable} "$@"\nexit 3\n')
    fake.chmod(0o755)
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(SCRIPT), "--rehearse", str(out)], capture_output=True, text=True,
                          env={**os.environ, "PYTHON": str(fake), "TMPDIR": str(tmp_path)}, timeout=300)
    ran = re.findall(r"^(\S+)\s+rc=(\d+)", (out / "summary.txt").read_text(), re.M)
    assert [name for name, _ in ran] == STAGES and {rc for _, rc in ran} == {"3"}, ran
    assert proc.returncode == 1, proc.stdout[-2000:]
