#!/usr/bin/env bash
# Everything only a GPU can show, in one command, most valuable first (docs/benchmarks.md, "The
# GPU check"). Each stage runs under its own limit and writes its own files when it ends,
# so a stage killed at its limit (or the whole command killed) keeps the stages before it;
# the limits add up to under 7 minutes. Runs with the machine's python3 as it is: nothing
# installed or downloaded, no IPython needed.
#   1. speed.csv, speed.md: images/s of models 1 and 4, fp16 + GradScaler (the T4's path)
#      and bf16, batch 128/256/512, eager then compiled, as a share of the GPU's peak
#      (FLOPs counted by torch.utils.flop_counter over the step time), peak memory;
#   2. cuda-tests.txt: the tests marked `cuda`;
#   3. recipes.md: model 1 by the fast recipe and by the report's on the real CIFAR-10
#      archive for the same epochs (as many as the report's recipe takes about 35 s for,
#      paced by a 1-epoch run kept outside the pair's runs folder, so out of their Table 1);
#   4. bench.md: python bench/run.py --device cuda (written section by section).
# summary.txt: the machine, then each stage's exit status, seconds and limit; log.txt: each
# stage's output. At most 8 files, for a remote machine that brings back only a few.
#
# usage: bash bench/gpu_check.sh [--rehearse] [OUT] [ARCHIVE]
#   OUT      default gpu-check/
#   ARCHIVE  the CIFAR-10 JPEG tree as a .tar.gz, inside the checkout; default
#            data/cifar10-jpeg.tar.gz (data/ is git-ignored: copy it there, and carry it)
#   --rehearse  every stage on the CPU with tiny sizes, a Python without IPython and
#            ipywidgets, and a tiny archive made on the spot: what CI runs
#            (tests/test_gpu_check.py)
set -uo pipefail
cd "$(dirname "$0")/.."
REHEARSE=0
if [ "${1:-}" = "--rehearse" ]; then REHEARSE=1; shift; fi
OUT=${1:-gpu-check}
ARCHIVE=${2:-data/cifar10-jpeg.tar.gz}
PY=${PYTHON:-python3}
# seconds on the GPU, stage by stage (sum < 420: 7 minutes); a rehearsal on a busy CPU
# gets SCALE times as long: it proves the stages run, not how fast
LIMITS="machine=15 speed=120 cuda-tests=90 pace=35 recipe-fast=50 recipe-report=50 table=15 bench=40"
SCALE=1; [ $REHEARSE = 1 ] && SCALE=4
limit() { local kv; for kv in $LIMITS; do [ "${kv%%=*}" = "$1" ] && echo $(( ${kv#*=} * SCALE )); done; }

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/colabkit-gpu-check.XXXXXX")  # run folders: 110 MB checkpoints stay out of OUT
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
DEVICE=cuda
if [ $REHEARSE = 1 ]; then
  DEVICE=cpu
  # a Python without IPython and ipywidgets, as on a bare GPU server
  mkdir -p "$WORK/site"
  echo "import sys; sys.modules.update(dict.fromkeys(['IPython', 'ipywidgets'], None))" > "$WORK/site/sitecustomize.py"
  export PYTHONPATH="$WORK/site:$PYTHONPATH" OMP_NUM_THREADS=1
  ARCHIVE="$WORK/tiny-cifar.tar.gz"
  $PY - "$ARCHIVE" <<'EOF'
import io, sys, tarfile
import numpy as np
from PIL import Image
rng = np.random.default_rng(0)
with tarfile.open(sys.argv[1], "w:gz") as tar:
    for split, n in (("train", 24), ("test", 8)):
        for c in ("cat", "dog", "ship"):
            for j in range(n):
                buf = io.BytesIO()
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, "JPEG")
                info = tarfile.TarInfo(f"tiny/{split}/{c}/{j:04d}.jpg")
                info.size = buf.tell()
                buf.seek(0)
                tar.addfile(info, buf)
EOF
fi
: > "$OUT/log.txt"
status=0

# stage NAME FILE COMMAND...: under NAME's limit; output to FILE (log.txt: appended)
stage() {
  local name=$1 file=$2; shift 2
  local lim start end rc
  lim=$(limit "$name")
  start=$(date +%s%N)
  echo "=== $name (limit ${lim} s): $*" >> "$OUT/log.txt"
  if [ "$file" = log.txt ]; then
    timeout -k 5 "$lim" "$@" >> "$OUT/log.txt" 2>&1
  else
    timeout -k 5 "$lim" "$@" > "$OUT/$file" 2>&1
  fi
  rc=$?
  end=$(date +%s%N)
  [ $rc = 0 ] || status=1
  printf '%-14s rc=%-4s %6.1f s  (limit %s s)\n' "$name" "$rc" \
    "$(( (end - start) / 1000000 ))e-3" "$lim" >> "$OUT/summary.txt"
  return $rc
}

{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null | head -3
  [ $REHEARSE = 1 ] && echo "REHEARSAL on the CPU: tiny sizes, no figures to keep"; } > "$OUT/summary.txt"
stage machine log.txt $PY -c "import sys, torch, colabkit; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'colabkit', colabkit.__version__, 'IPython loaded:', sys.modules.get('IPython') is not None)"

# 1. speed
TINY=(); [ $REHEARSE = 1 ] && TINY=(--tiny)
stage speed log.txt $PY bench/gpu_speed.py --device $DEVICE --out "$OUT" --budget-s $(( $(limit speed) - 20 )) "${TINY[@]}"

# 2. the cuda tests (on the CPU they are collected and skipped)
stage cuda-tests cuda-tests.txt $PY -m pytest -m cuda -q -rA -p no:cacheprovider tests/test_cuda.py

# 3. both recipes for the same epochs on the real archive
if [ -f "$ARCHIVE" ]; then
  R="$WORK/recipes"  # the pair alone: Table 1 of these two runs
  COMMON=(--experiment basic --dataset folder --data-root "$ARCHIVE" --device $DEVICE --quiet)
  EMAX=30
  if [ $REHEARSE = 1 ]; then COMMON+=(--width 4 --batch-size 16 --train-size 48 --test-size 24); EMAX=1; fi
  stage pace log.txt $PY -m colabkit train "${COMMON[@]}" --recipe report --epochs 1 --run-dir "$WORK/pace"
  # the report recipe's epoch (batch 128) is the slower of the two: E of them take ~35 s
  E=$($PY -c "import csv,sys; s=float(list(csv.DictReader(open(sys.argv[1])))[-1]['seconds']); print(max(1, min($EMAX, int(35 // max(s, 1e-3)))))" "$WORK/pace/metrics.csv" 2>/dev/null || echo 1)
  echo "paced: $E epochs for each recipe" >> "$OUT/log.txt"
  for recipe in fast report; do
    stage recipe-$recipe log.txt $PY -m colabkit train "${COMMON[@]}" --recipe $recipe --epochs "$E" --run-dir "$R/basic-$recipe"
  done
  stage table log.txt $PY -m colabkit report "$R" --out "$WORK/report"
  { echo "# Model 1, fast recipe against the report's: $E epochs each, on $ARCHIVE"; echo
    cat "$WORK/report/table1.md" 2>/dev/null; echo; echo '```'; cat "$WORK/report/runs.csv" 2>/dev/null; echo '```'
    for recipe in fast report; do echo; echo "basic-$recipe metrics.csv:"; echo '```'
      cat "$R/basic-$recipe/metrics.csv" 2>/dev/null; echo '```'; done; } > "$OUT/recipes.md"
else
  echo "no archive at $ARCHIVE: stage 3 skipped (copy the CIFAR-10 JPEG archive there: docs/benchmarks.md)" | tee "$OUT/recipes.md" >> "$OUT/summary.txt"
  status=1
fi

# 4. the benchmark tables
QUICK=(); [ $REHEARSE = 1 ] && QUICK=(--quick)
stage bench log.txt $PY bench/run.py --device $DEVICE --out "$OUT/bench.md" "${QUICK[@]}"

rm -rf "$WORK"
cat "$OUT/summary.txt"
exit $status
