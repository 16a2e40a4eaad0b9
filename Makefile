# Two entry points for a fresh machine: `make demo` (train end to end, then the report)
# and `make test`. Each creates .venv and installs what it needs first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The torch build that the tests were run with: PyPI's default for Linux, a CUDA build
# (about 5.8 GB in .venv, 3.2 GB of it NVIDIA libraries) that also runs on the CPU.
# A CPU-only build is far smaller:
#   make TORCH="torch torchvision --index-url https://download.pytorch.org/whl/cpu" test
# TORCH="" keeps whatever pip picks for torch>=2.3.
TORCH ?= torch==2.14.1 torchvision==0.29.1

.PHONY: demo test figures bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(if $(TORCH),$(PY) -m pip install -q $(TORCH))
	$(PY) -m pip install -q -e ".[test]"
	touch $@

demo: $(VENV)/.installed
	$(PY) -m colabkit demo --home colabkit-home

test: $(VENV)/.installed
	$(PY) -m pytest -q

figures: $(VENV)/.installed
	$(PY) -m colabkit report logs --out figures
	$(PY) -m colabkit report logs/ablations --out figures/ablations
	$(PY) -m colabkit report logs/recipes --out figures/recipes

bench: $(VENV)/.installed
	$(PY) bench/run.py --device cpu

clean:
	rm -rf $(VENV) colabkit-home .pytest_cache
