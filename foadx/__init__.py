"""foadx: FOAD filter pruning to a fast, verified deployment.

The public API: ``build_model``, ``load_weights``, ``load_images``, ``prune``, ``load_pruned``,
``export_onnx``, ``verify_onnx``, ``resolve_model`` and ``provenance_of``; the tasks the CLI runs
(``prune_model``, ``finetune``, ``profile``, ``prune_to_latency``, ``bench_models``, ``evaluate``
with their option objects); the method itself is in ``foadx.foad``,
structure in ``foadx.pruning``, runtimes and latency in ``foadx.runtime`` and ``foadx.bench``.

Names are imported on first use (PEP 562): ``import foadx`` and ``foadx --version`` do not pay
for torch, onnx and onnxruntime until something needs them.
"""

from __future__ import annotations

import importlib
from typing import Any

from foadx._version import __version__

_EXPORTS = {
    "load_images": "foadx.data.calibration",
    "PruneRequest": "foadx.tasks.prune",
    "prune_model": "foadx.tasks.prune",
    "FinetuneConfig": "foadx.train",
    "finetune": "foadx.train",
    "BenchRequest": "foadx.tasks.bench",
    "bench_models": "foadx.tasks.bench",
    "EvalRequest": "foadx.tasks.evaluate",
    "evaluate": "foadx.tasks.evaluate",
    "profile": "foadx.latency",
    "prune_to_latency": "foadx.latency",
    "PruneResult": "foadx.pruning",
    "prune": "foadx.pruning",
    "load_pruned": "foadx.pruning",
    "build_model": "foadx.models",
    "load_weights": "foadx.models",
    "export_onnx": "foadx.export",
    "verify_onnx": "foadx.export",
    "resolve_model": "foadx.resolve",
    "ModelRef": "foadx.resolve",
    "Plan": "foadx.provenance",
    "Provenance": "foadx.provenance",
    "provenance_of": "foadx.provenance",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'foadx' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
