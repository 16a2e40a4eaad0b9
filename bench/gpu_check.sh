#!/usr/bin/env bash
# Everything only a GPU can show, in one command (its timeouts add up to under 10 minutes):
#   1. the tests marked `cuda` (fp16/bf16, resume on the GPU, background writer, channels_last,
#      CUDA generator, torch.compile, memory at batch 128, NCCL when there are two GPUs);
#   2. python bench/run.py --device cuda (augmentation, training speed against the report's
#      way, checkpoint stall, resume);
#   3. a 2-epoch run of model 4 on the real CIFAR-10 archive (JPEG tree as a .tar.gz);
#   4. model 1 on the same archive by the fast recipe and by the report's, for the same
#      number of epochs: as many as take the fast recipe about 80 s (paced by a short run);
#      Table 1 of the two in OUT/recipes-table1.md.
# Everything goes to one folder: OUT (default gpu-check/).
#
# usage: bash bench/gpu_check.sh [ARCHIVE] [OUT]
#   ARCHIVE  default data/cifar10-jpeg.tar.gz (copy ../shared/data/cifar10-jpeg.tar.gz there)
set -uo pipefail
cd "$(dirname "$0")/.."
ARCHIVE=${1:-data/cifar10-jpeg.tar.gz}
OUT=${2:-gpu-check}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
status=0
{
  date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
} > "$OUT/machine.txt" 2>&1

timeout 130 $PY -m pytest -m cuda -q -rA -s tests/test_cuda.py > "$OUT/pytest-cuda.txt" 2>&1 || status=1
timeout 100 $PY bench/run.py --device cuda --out "$OUT/bench-cuda.md" > "$OUT/bench.txt" 2>&1 || status=1
if [ -f "$ARCHIVE" ]; then
  RUN=${TMPDIR:-/tmp}/colabkit-gpu-check-model4  # checkpoints stay out of OUT (110 MB each)
  rm -rf "$RUN"
  timeout 70 $PY -m colabkit train --experiment da_cbam_aspp --dataset folder --data-root "$ARCHIVE" \
      --epochs 2 --device cuda --run-dir "$RUN" > "$OUT/run-model4.txt" 2>&1 || status=1
  cp "$RUN/metrics.csv" "$OUT/run-model4-metrics.csv" 2>/dev/null
  cp "$RUN/environment.json" "$OUT/run-model4-environment.json" 2>/dev/null
  # 4. the recipes: one fast epoch measures the pace, then both recipes for E epochs
  R=${TMPDIR:-/tmp}/colabkit-gpu-check-recipes
  rm -rf "$R"
  COMMON="--experiment basic --dataset folder --data-root $ARCHIVE --device cuda --quiet"
  timeout 40 $PY -m colabkit train $COMMON --recipe fast --epochs 2 --run-dir "$R/pace" > "$OUT/recipes.txt" 2>&1
  E=$($PY -c "import csv,sys; r=list(csv.DictReader(open(sys.argv[1]))); s=float(r[-1]['seconds']); print(max(2, min(30, int(80 // s))))" "$R/pace/metrics.csv" 2>/dev/null || echo 3)
  for recipe in fast report; do
    timeout 125 $PY -m colabkit train $COMMON --recipe $recipe --epochs "$E" --run-dir "$R/basic-$recipe" >> "$OUT/recipes.txt" 2>&1 || status=1
  done
  $PY -m colabkit report "$R" --out "$R/report" >> "$OUT/recipes.txt" 2>&1
  cp "$R/report/table1.md" "$OUT/recipes-table1.md" 2>/dev/null
  cp "$R/report/runs.csv" "$OUT/recipes-runs.csv" 2>/dev/null
else
  echo "no archive at $ARCHIVE: the real-data run was skipped" > "$OUT/run-model4.txt"
fi
tail -n 3 "$OUT"/*.txt
exit $status
