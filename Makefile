# Entry points for a fresh machine: `make demo` (train end to end, then the report),
# `make test` (the whole suite on the development stack), `make test-fast` (the suite
# without the integration tests: what to run while working), `make test-colab` (the whole
# suite on Colab's), `make release-check`. Each creates its venv and installs what it needs first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The torch build that the tests were run with: PyPI's default for Linux, a CUDA build
# (about 5.8 GB in .venv, 3.2 GB of it NVIDIA libraries) that also runs on the CPU.
# A CPU-only build is far smaller:
#   make TORCH="torch torchvision --index-url https://download.pytorch.org/whl/cpu" test
# TORCH="" keeps whatever pip picks for torch>=2.3.
TORCH ?= torch==2.14.1 torchvision==0.29.1

# Colab's stack: Python 3.13 and the versions pinned in constraints/colab.txt, in their own
# venv. Python 3.13 from pyenv when it has one, else python3.13 on PATH; without either,
# install one (`pyenv install 3.13`, `uv python install 3.13`, or your system's python3.13
# package) or name it: make PYTHON_COLAB=/path/to/python3.13 test-colab
PYTHON_COLAB ?= $(or $(shell p=$$(pyenv prefix 3.13 2>/dev/null) && echo $$p/bin/python3.13),python3.13)
COLAB_VENV ?= .venv-colab
COLAB_PY := $(COLAB_VENV)/bin/python

# one worker per core (pytest-xdist), each taking whole test files, so a module's trained
# fixture is trained once and the tests of a file share nothing with another worker's;
# each run ends with its 15 slowest tests, so a slowdown shows
PYTEST_ARGS ?= -q -n auto --dist loadfile --durations=15

.PHONY: demo test test-fast test-colab release-check cli-docs figures bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(if $(TORCH),$(PY) -m pip install -q $(TORCH))
	$(PY) -m pip install -q -e ".[test]"
	touch $@

$(COLAB_VENV)/.installed: pyproject.toml constraints/colab.txt
	@$(PYTHON_COLAB) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null || { \
	  echo "make test-colab needs Python 3.13, Colab's: '$(PYTHON_COLAB)' is not it. Install one" \
	       "(pyenv install 3.13, or uv python install 3.13, or your system's python3.13)," \
	       "then: make PYTHON_COLAB=/path/to/python3.13 test-colab"; exit 1; }
	rm -rf $(COLAB_VENV)
	$(PYTHON_COLAB) -m venv $(COLAB_VENV)
	$(COLAB_PY) -m pip install -q -r constraints/colab.txt  # all of Colab's pins, scipy too
	$(COLAB_PY) -m pip install -q -c constraints/colab.txt -e ".[test]"
	touch $@

demo: $(VENV)/.installed
	$(PY) -m colabkit demo --home colabkit-home

test: $(VENV)/.installed
	$(PY) -m pytest $(PYTEST_ARGS)

# everything but the tests marked integration (real notebook kernels, killed trainers,
# torchrun, the GPU check's rehearsal): a few minutes
test-fast: $(VENV)/.installed
	$(PY) -m pytest $(PYTEST_ARGS) -m "not integration"

# the whole suite on Colab's stack; test_stack.py checks the venv holds exactly those versions
test-colab: $(COLAB_VENV)/.installed
	COLABKIT_EXPECT_STACK=constraints/colab.txt $(COLAB_PY) -m pytest $(PYTEST_ARGS) -p no:cacheprovider

# is this tree ready to be tagged v<version>? (docs/releasing.md; standard library only)
release-check:
	$(PYTHON) tools/release_check.py

# docs/cli.md from the command line's parser (tests/test_docs.py fails when it is stale)
cli-docs: $(VENV)/.installed
	$(PY) tools/make_cli_docs.py

# figures/ from logs/: the top set, then each set in a folder of its own that exists
# (logs/gpu: the runs bench/gpu_check.sh brings back in runs.tar.gz, once there are any).
# LOGS and FIGURES name other folders (tests/test_gpu_check.py draws a rehearsal's runs so)
LOGS ?= logs
FIGURES ?= figures
FIGURE_SETS = ablations recipes gpu
figures: $(VENV)/.installed
	$(PY) -m colabkit report $(LOGS) --out $(FIGURES)
	for s in $(FIGURE_SETS); do if [ -d $(LOGS)/$$s ]; then \
	  $(PY) -m colabkit report $(LOGS)/$$s --out $(FIGURES)/$$s || exit 1; fi; done
	$(PY) -m colabkit tensorboard $(LOGS)

bench: $(VENV)/.installed
	$(PY) bench/run.py --device cpu

clean:
	rm -rf $(VENV) $(COLAB_VENV) colabkit-home .pytest_cache
