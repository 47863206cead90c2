# Two commands are all a fresh clone needs: `make demo` and `make test` (each installs first).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
FOADX  := $(VENV)/bin/foadx
STAMP  := $(VENV)/.installed

.PHONY: install test test-all demo bench clean

install: $(STAMP)

# torch/torchvision pinned first: they install from this machine's local disk; the project then
# resolves its floor (torch>=2.6) to them instead of downloading a newer build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -c "import foadx, torch_pruning, foadx_cli"
	touch $(STAMP)

test: install
	$(PY) -m pytest -q

test-all: install
	$(PY) -m pytest -q -m "slow or not slow"

demo: install
	$(PY) -m foadx_cli.demo

bench: install
	$(PY) benchmarks/bench_foad_similarity.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
