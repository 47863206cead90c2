# Two commands are all a fresh clone needs: `make demo` and `make test` (each installs first).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
FOADX  := $(VENV)/bin/foadx
STAMP  := $(VENV)/.installed

.PHONY: install test test-all docs demo demo-accuracy bench gpu-wheels gpu-check clean

install: $(STAMP)

# torch/torchvision pinned first: they install from this machine's local disk; the project then
# resolves its floor (torch>=2.6) to them instead of downloading a newer build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
	$(PY) -m pip install -q -e ".[dev,docs,openvino,insightface,plots]"
	$(PY) -c "import foadx, torch_pruning, foadx_cli, importlinter, openvino, insightface, matplotlib, mkdocs, mkdocstrings"
	touch $(STAMP)

# The layer contracts (pyproject.toml, [tool.importlinter]) first: an upward import fails fast.
# Then the suite in two processes (pytest-xdist; one torch thread each, tests/conftest.py), and
# last, alone, the tests that time something against a target or a clock (marker "serial").
test: install
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q -n 2 -m "not slow and not serial"
	$(PY) -m pytest -q -m "serial and not slow"

# The documentation site, strict (a broken link, anchor or a page missing from the nav fails), into
# site/ (git-ignored). `make test` builds it too: tests/test_docs.py runs the same strict build.
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site   # not --quiet: it stops strict counting warnings

test-all: install
	$(PY) -m pytest -q -n 2 -m "not serial"
	$(PY) -m pytest -q -m "serial"

# The pipeline so far, on the embedded real MNIST digits: FOAD at the paper's MACs budget (widths
# rounded to 16 for SIMD kernels), the l1 baseline at the same budget, a reload of the artifact,
# ONNX export with parity proven in onnxruntime, a full-vs-pruned ORT CPU latency table, and the
# regression gate against the report just written (at 100%: on this shared 2-core VM the same file's
# median has moved by up to 70% between two runs a minute apart; a gate on a dedicated runner uses
# 5-10%). Outputs go to demo-out/.
demo: install
	mkdir -p demo-out
	$(FOADX) models
	$(FOADX) inspect mobilefacenet
	$(FOADX) prune mobilefacenet --data demo --flops-target 0.636 --round-to 16 --recalibrate-bn --out demo-out/mobilefacenet-foad
	$(FOADX) prune mobilefacenet --data demo --flops-target 0.636 --round-to 16 --criterion l1 --recalibrate-bn --out demo-out/mobilefacenet-l1
	$(PY) -c "import foadx; m = foadx.load_pruned('demo-out/mobilefacenet-foad'); print('reloaded', type(m).__name__, sum(p.numel() for p in m.parameters()), 'params')"
	$(FOADX) export mobilefacenet --out demo-out/mobilefacenet.onnx --quiet
	$(FOADX) export demo-out/mobilefacenet-foad --out demo-out/mobilefacenet-foad.onnx --report demo-out/parity.json
	$(FOADX) verify demo-out/mobilefacenet-foad.onnx --against demo-out/mobilefacenet-foad --quiet
	$(FOADX) bench demo-out/mobilefacenet.onnx demo-out/mobilefacenet-foad.onnx --batch 1,8 --duration-s 3 --report demo-out/latency.json --markdown demo-out/latency.md
	$(FOADX) bench demo-out/mobilefacenet.onnx demo-out/mobilefacenet-foad.onnx --batch 1,8 --duration-s 3 --baseline demo-out/latency.json --max-regression 100 --quiet
	@echo "regression gate passed (exit 0); reports: demo-out/latency.md, demo-out/parity.json"
	$(MAKE) demo-accuracy

# Accuracy on real data, as one pipeline file (examples/digits.toml): train MobileFaceNet at 32x32
# on the digits, prune it with FOAD, l1 and random at the same budget (60% fewer MACs, BN
# re-estimated), fine-tune each for one epoch, export, verify, bench, report (demo-out/pipeline/
# report/report.html); then the face path: ArcFace on digits 0-6, verification on pairs of 7-9.
demo-accuracy: install
	mkdir -p demo-out
	$(FOADX) run examples/digits.toml --out demo-out/pipeline
	$(FOADX) run examples/digits.toml --out demo-out/pipeline --quiet   # again: every stage skipped
	$(FOADX) eval demo-out/pipeline/export/foad.onnx --data demo --report demo-out/eval-digits-foad-tuned-onnx.json
	$(FOADX) finetune mobilefacenet --input-size 32 --task face --data demo --epochs 2 --lr 0.1 --margin-warmup-epochs 1 --out demo-out/face --quiet
	$(FOADX) eval demo-out/face --task face --data demo --report demo-out/eval-face.json
	$(PY) scripts/demo_table.py demo-out

bench: install
	$(PY) benchmarks/bench_foad_similarity.py
	$(PY) benchmarks/bench_export.py --batch 1,8

# The wheels a lent GPU machine lacks (docs/gpu.md): it has torch 2.11, torchvision, onnx,
# onnxscript, onnxruntime, typer, rich, numpy, attrs, ml-dtypes and typing-extensions but not these
# (nor the network). Python 3.12, manylinux x86-64; versions within pyproject's ranges.
GPU_WHEELS := torch-pruning==1.6.1 onnx-graphsurgeon==0.6.1 onnx2torch==1.5.15 jsonschema==4.26.0 \
	jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1
GPU_PLATFORMS := manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64

gpu-wheels:
	rm -rf .whl && mkdir -p .whl
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		$(foreach p,$(GPU_PLATFORMS),--platform $(p)) -d .whl $(GPU_WHEELS)
	@du -sh .whl; ls .whl

# Everything GPU-worth in one call from a plain checkout, no venv (also runs on a CPU, skipping the
# GPU parts); OUT=dir for results. PYTHON=.venv/bin/python rehearses it where python3 has no torch.
gpu-check:
	PYTHON=$(PYTHON) sh scripts/gpu_check.sh $${OUT:-gpu-check-out}

clean:
	rm -rf $(VENV) build site *.egg-info .pytest_cache
