#!/usr/bin/env bash
# Installs the oldest versions colabkit claims to support (pyproject.toml's lower bounds,
# with the torch at hand: TORCH, default torch==2.14.1 torchvision==0.29.1) in a fresh
# virtual environment, imports every module and runs the suite without its integration
# tests there (pytest -m "not integration", as make test-fast).
#
# usage: bash tools/check_oldest.sh [VENV]      (default /tmp/colabkit-oldest)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-/tmp/colabkit-oldest}
TORCH=${TORCH:-"torch==2.14.1 torchvision==0.29.1"}
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q $TORCH
"$VENV/bin/python" -m pip install -q "numpy==1.23.5" "pandas==1.5.3" "matplotlib==3.6.3" \
    "tqdm==4.64.1" "ipywidgets==7.6.5" "pillow==9.5.0" "scipy==1.11.4" \
    pytest pytest-timeout pytest-xdist nbclient nbformat ipykernel
"$VENV/bin/python" -m pip install -q --no-deps -e .
"$VENV/bin/python" - <<'PY'
import importlib, pkgutil, colabkit
for m in pkgutil.walk_packages(colabkit.__path__, "colabkit."):
    importlib.import_module(m.name)
import numpy, pandas, matplotlib, tqdm, ipywidgets, PIL, scipy, torch
print("imported every colabkit module with numpy", numpy.__version__, "pandas", pandas.__version__,
      "matplotlib", matplotlib.__version__, "tqdm", tqdm.__version__, "ipywidgets",
      ipywidgets.__version__, "pillow", PIL.__version__, "torch", torch.__version__)
PY
"$VENV/bin/python" -m pytest -q -p no:cacheprovider -n auto --dist loadfile -m "not integration"
