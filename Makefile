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

# The pipeline so far, on the embedded real MNIST digits: FOAD at the paper's MACs budget, the
# l1 baseline at the same budget, and a reload of the artifact. Outputs go to demo-out/.
demo: install
	mkdir -p demo-out
	$(FOADX) models
	$(FOADX) inspect mobilefacenet
	$(FOADX) prune mobilefacenet --data demo --flops-target 0.636 --recalibrate-bn --out demo-out/mobilefacenet-foad
	$(FOADX) prune mobilefacenet --data demo --flops-target 0.636 --criterion l1 --recalibrate-bn --out demo-out/mobilefacenet-l1
	$(PY) -c "import foadx; m = foadx.load_pruned('demo-out/mobilefacenet-foad'); print('reloaded', type(m).__name__, sum(p.numel() for p in m.parameters()), 'params')"

bench: install
	$(PY) benchmarks/bench_foad_similarity.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
