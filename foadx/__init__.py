"""foadx: FOAD filter pruning to a fast, verified deployment.

The public API: ``prune``, ``load_pruned``, ``build_model``, ``export_onnx``, ``verify_onnx``;
the method itself is in ``foadx.foad``; structure in ``foadx.prune``; runtimes and latency in
``foadx.runtime`` and ``foadx.bench``.
"""

from foadx._version import __version__
from foadx.export import export_onnx, verify_onnx
from foadx.models import build_model, load_weights
from foadx.prune import PruneResult, load_pruned, prune

__all__ = [
    "PruneResult",
    "__version__",
    "build_model",
    "export_onnx",
    "load_pruned",
    "load_weights",
    "prune",
    "verify_onnx",
]
