#!/usr/bin/env bash
# Everything only a GPU can show, in one command, most valuable first (docs/benchmarks.md, "The
# GPU check"): the first real accuracy before anything else. The stages, in order:
#   machine      the date, GPU, Python, torch; the archive loaded once (colabkit's cache built)
#   pace         models 1 and 4, fast recipe, 2 epochs on a slice: each run's seconds predicted
#                (pace.csv), and from them the limits of the training stages
#   accuracy-1   model 1 (basic) by the fast recipe on the real archive, to the end: 30 epochs,
#                all 50,000 training images less a 5,000-image validation split; flip TTA
#                reported apart (runs.tar.gz, summary.txt)
#   accuracy-4   model 4 (da_cbam_aspp) the same way
#   speed        images/s of models 1 and 4 as a share of the GPU's peak (speed.csv, speed.md)
#   cuda-tests   the tests marked `cuda` (cuda-tests.txt)
#   bench        python bench/run.py --device cuda (bench.md), if it fits
#   seeds        more seeds of both models while the budget lasts (runs.tar.gz)
# All of it within BUDGET seconds (under 9 minutes of the 15 a GPU machine is lent, its start
# included): a stage starts only if its limit fits in what is left (a training stage: with
# the speed table and the cuda tests still fitting after it), so nothing starts that
# cannot end. Each stage writes its files when it ends (a stage killed at its limit, or the
# whole command killed, keeps the stages before it); a stage that writes none of its files
# fails. summary.txt: the archive first, the machine, each run's accuracies, then each stage's
# exit status, seconds and limit; log.txt: each stage's output. 8 files in all, for a remote
# machine that brings back 8: summary.txt log.txt pace.csv runs.tar.gz speed.csv speed.md
# cuda-tests.txt bench.md. runs.tar.gz unpacks into logs/gpu/ (its README.md included).
# The command exits non-zero if any stage fails or a stage other than bench and seeds is skipped.
#
# usage: bash bench/gpu_check.sh [--rehearse] [OUT] [ARCHIVE]
#   OUT      default gpu-check/
#   ARCHIVE  the CIFAR-10 JPEG tree as a .tar.gz, inside the checkout; default
#            data/cifar10-jpeg.tar.gz (data/ is git-ignored: copy it there, and carry it).
#            Without it the command says so in its first line and stops, before any GPU work.
#   --rehearse  every stage on the CPU with tiny sizes, a Python without IPython,
#            ipywidgets and tensorboard, and a tiny archive made on the spot, every limit x4: what CI runs
#            (tests/test_gpu_check.py); any stage skipped fails it
set -uo pipefail
cd "$(dirname "$0")/.."
export GPU_CHECK_COMMAND="bash bench/gpu_check.sh $*"  # for the runs' README
REHEARSE=0
if [ "${1:-}" = "--rehearse" ]; then REHEARSE=1; shift; fi
OUT=${1:-gpu-check}
ARCHIVE=${2:-data/cifar10-jpeg.tar.gz}
PY=${PYTHON:-python3}
START=$(date +%s%N)
# seconds on the GPU: the whole command's budget, and the limits of the stages that are not
# paced (a rehearsal on a busy CPU gets SCALE times as long: it proves the stages run, not how fast)
BUDGET=510
LIMITS="machine=45 pace=75 speed=90 cuda-tests=90 bench=40"
OPTIONAL="bench seeds"  # skipped for want of time on a GPU, they do not fail the command
SCALE=1; [ $REHEARSE = 1 ] && SCALE=4
limit() { local kv; for kv in $LIMITS; do [ "${kv%%=*}" = "$1" ] && echo $(( ${kv#*=} * SCALE )); done; }
left() { echo $(( BUDGET * SCALE - ($(date +%s%N) - START) / 1000000000 )); }

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
# the files of an earlier check in OUT go first: what comes back is this check's
rm -f "$OUT"/{summary.txt,log.txt,pace.csv,runs.tar.gz,speed.csv,speed.md,cuda-tests.txt,bench.md}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/colabkit-gpu-check.XXXXXX")  # run folders: checkpoints stay out of OUT
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
DEVICE=cuda
# the runs' flags: checkpoints only at the end (they are not kept); a 5,000-image validation
# split chooses each run's best epoch, so its test accuracy is an honest estimate
TRAIN=(--dataset folder --data-root "$ARCHIVE" --val-size 5000 --checkpoint-minutes 60 --quiet)
PACE=(); SEEDS=(--max-seeds 4); SPEED=(); QUICK=()
if [ $REHEARSE = 1 ]; then
  DEVICE=cpu
  # a Python without IPython, ipywidgets and tensorboard, as on a bare GPU server
  mkdir -p "$WORK/site"
  echo "import sys; sys.modules.update(dict.fromkeys(['IPython', 'ipywidgets', 'tensorboard'], None))" > "$WORK/site/sitecustomize.py"
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
  TRAIN=(--dataset folder --data-root "$ARCHIVE" --val-size 12 --checkpoint-minutes 60 --quiet
         --width 4 --batch-size 16 --train-size 48 --test-size 24 --epochs 2)
  PACE=(--pace-images 24); SEEDS=(--max-seeds 1); SPEED=(--tiny); QUICK=(--quick)
fi
TRAIN+=(--device $DEVICE)

# the archive first: without it no GPU minute is spent
if [ ! -s "$ARCHIVE" ]; then
  echo "no archive at $ARCHIVE: nothing was run. Copy the CIFAR-10 JPEG archive there (inside the checkout, in the git-ignored data/), carry it, and run again (docs/benchmarks.md)" | tee "$OUT/summary.txt"
  rm -rf "$WORK"
  exit 2
fi
echo "archive: $ARCHIVE ($(( $(stat -c %s "$ARCHIVE") / 1024 )) KiB)" | tee "$OUT/summary.txt"
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null | head -3
  [ $REHEARSE = 1 ] && echo "REHEARSAL on the CPU: tiny sizes, no figures to keep"; } >> "$OUT/summary.txt"
: > "$OUT/log.txt"
status=0
STAGES_RUN=""
RESERVE=0  # seconds a stage leaves for the stages after it

sig() { stat -c '%s.%Y.%i' "$OUT/$1" 2>/dev/null || echo none; }
line() { printf '%-14s rc=%-4s %6.1f s  (limit %s s)%s\n' "$1" "$2" "$3" "$4" "${5:+: $5}" >> "$OUT/summary.txt"; }

# stage NAME LIMIT OUTFILE "FILES" COMMAND...: COMMAND under LIMIT seconds, its output to
# OUTFILE (log.txt and summary.txt: appended); it must (re)write each of FILES, or it fails. Not started
# when LIMIT does not fit in what is left of the budget.
stage() {
  local name=$1 lim=$2 file=$3 files=$4; shift 4
  local start end rc f before=() i=0 missing=""
  STAGES_RUN="$STAGES_RUN $name"
  if [ $(( lim + 5 + RESERVE )) -gt "$(left)" ]; then
    local kept=""; [ "$RESERVE" -gt 0 ] && kept=", $RESERVE s of it kept for the speed table and the cuda tests"
    line "$name" skip 0 "$lim" "not started: $(left) s of the budget left$kept"
    case " $OPTIONAL " in *" $name "*) [ $REHEARSE = 1 ] && status=1 ;; *) status=1 ;; esac
    return 1
  fi
  for f in $files; do before+=("$(sig "$f")"); done
  start=$(date +%s%N)
  echo "=== $name (limit ${lim} s): $*" >> "$OUT/log.txt"
  if [ "$file" = log.txt ] || [ "$file" = summary.txt ]; then
    timeout -k 5 "$lim" "$@" >> "$OUT/$file" 2>&1
  else
    timeout -k 5 "$lim" "$@" > "$OUT/$file" 2>&1
  fi
  rc=$?
  end=$(date +%s%N)
  for f in $files; do
    [ "$(sig "$f")" != "${before[$i]}" ] && [ -s "$OUT/$f" ] || missing="$missing $f"
    i=$((i + 1))
  done
  if [ $rc = 0 ] && [ -n "$missing" ]; then rc=nofile; fi
  [ "$rc" = 0 ] || status=1
  line "$name" "$rc" "$(( (end - start) / 1000000 ))e-3" "$lim" "${missing:+wrote nothing to:$missing}"
  [ "$rc" = 0 ]
}

stage machine "$(limit machine)" summary.txt summary.txt bash -c '
  "$0" -c "import sys, torch, colabkit; print(\"python\", sys.version.split()[0], \"torch\", torch.__version__, \"cuda\", torch.version.cuda, \"colabkit\", colabkit.__version__, \"IPython loaded:\", sys.modules.get(\"IPython\") is not None)" &&
  "$0" bench/gpu_runs.py data "$1" --work "$2"' "$PY" "$ARCHIVE" "$WORK"

# the pace: each training stage's limit (fallbacks where it failed: an estimate for an H200)
stage pace "$(limit pace)" log.txt pace.csv $PY bench/gpu_runs.py pace --work "$WORK" --out "$OUT" --scale $SCALE "${PACE[@]}" -- "${TRAIN[@]}"
LIMIT_basic=$(( 240 * SCALE )); LIMIT_da_cbam_aspp=$(( 300 * SCALE ))
[ -f "$WORK/plan.env" ] && . "$WORK/plan.env"

# the first real accuracies: model 1, then model 4, to the end; each starts only if the
# speed table (40 s at least) and the cuda tests still fit after it
RESERVE=$(( (40 + $(limit cuda-tests) / SCALE + 10) * SCALE ))
stage accuracy-1 "$LIMIT_basic" log.txt runs.tar.gz $PY bench/gpu_runs.py train --work "$WORK" --out "$OUT" --experiment basic -- "${TRAIN[@]}"
stage accuracy-4 "$LIMIT_da_cbam_aspp" log.txt runs.tar.gz $PY bench/gpu_runs.py train --work "$WORK" --out "$OUT" --experiment da_cbam_aspp -- "${TRAIN[@]}"
RESERVE=0

# the speed table: what is left of its limit, if at least 40 s (its rows are written as measured)
lim=$(limit speed); room=$(( $(left) - 5 )); [ "$room" -lt "$lim" ] && [ "$room" -ge $(( 40 * SCALE )) ] && lim=$room
stage speed "$lim" log.txt "speed.csv speed.md" $PY bench/gpu_speed.py --device $DEVICE --out "$OUT" --budget-s $(( lim - 20 * SCALE )) "${SPEED[@]}"

# the runs packed again: their README gets the T4 estimate from the speed table
$PY bench/gpu_runs.py pack --work "$WORK" --out "$OUT" >> "$OUT/log.txt" 2>&1

# the cuda tests (on the CPU they are collected and skipped)
stage cuda-tests "$(limit cuda-tests)" cuda-tests.txt cuda-tests.txt $PY -m pytest -m cuda -q -rA -p no:cacheprovider tests/test_cuda.py

# the benchmark tables, then more seeds of both models with all that is left
stage bench "$(limit bench)" log.txt bench.md $PY bench/run.py --device $DEVICE --out "$OUT/bench.md" "${QUICK[@]}"
# (5 s of it kept for collecting the last run; not started when not even model 1's run fits)
lim=$(( $(left) - 5 )); [ "$lim" -lt $(( LIMIT_basic + 5 * SCALE )) ] && lim=$(( LIMIT_basic + 5 * SCALE ))
stage seeds "$lim" log.txt runs.tar.gz $PY bench/gpu_runs.py seeds --work "$WORK" --out "$OUT" --budget-s $(( lim - 5 * SCALE )) "${SEEDS[@]}" -- "${TRAIN[@]}"

rm -rf "$WORK"
printf 'all stages: %.1f s of a %s s budget; exit status %s\n' "$(( ($(date +%s%N) - START) / 1000000 ))e-3" $(( BUDGET * SCALE )) $status >> "$OUT/summary.txt"
cat "$OUT/summary.txt"
exit $status
