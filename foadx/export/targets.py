"""Where an ONNX file will run decides its form: whether PReLU is rewritten and whether the
batch is fixed. Each choice below was measured (docs/deployment.md; reproduce with
``benchmarks/bench_targets.py``) on MobileFaceNet, 2-core AMD EPYC, onnxruntime 1.32,
OpenVINO 2026.4:

- ``ort-cpu``: PReLU rewritten (``foadx.export.passes``): onnxruntime's CPU provider runs the
  rewritten file 2.6-2.8x faster (its PRelu kernel leaves the blocked NCHWc layout). Dynamic batch.
- ``openvino``: PReLU kept: OpenVINO fuses PReLU into its convolutions and the rewrite made it
  1.2x slower (0.80-0.84x). Dynamic batch.
- ``tensorrt``: PReLU kept (TensorRT fuses it); dynamic batch with an optimisation profile.
- ``mobile``: batch fixed at 1 and PReLU kept: onnxruntime's mobile usability check gives NNAPI
  and CoreML 0 of 96 nodes with a dynamic batch and 96 of 96 with a fixed one; the rewrite would
  only grow the graph (228 nodes) for accelerators that run PRelu natively.
- ``insightface``: the ``ort-cpu`` form (insightface runs onnxruntime), plus the checks
  insightface's loader and ONNX acceptance script make, and its model-package manifest.

Which target a file run on a backend takes is the backend's own fact:
``foadx.runtime.registry.Backend.export_target``.
"""

from __future__ import annotations

from dataclasses import dataclass

from foadx.errors import BadInputError


@dataclass(frozen=True)
class ExportTarget:
    """One ONNX form: whether PReLU is rewritten, the batch (``"dynamic"`` or a fixed size) and
    what runs it."""

    name: str
    prelu_rewrite: bool
    batch: int | str
    runtime: str  # what runs it, for messages and metadata


TARGETS: dict[str, ExportTarget] = {
    target.name: target
    for target in (
        ExportTarget("ort-cpu", True, "dynamic", "onnxruntime CPU"),
        ExportTarget("openvino", False, "dynamic", "OpenVINO"),
        ExportTarget("tensorrt", False, "dynamic", "TensorRT"),
        ExportTarget("mobile", False, 1, "onnxruntime mobile (NNAPI, CoreML, XNNPACK)"),
        ExportTarget("insightface", True, "dynamic", "insightface (onnxruntime)"),
    )
}


def get_target(name: str) -> ExportTarget:
    """The entry of ``name``.

    Raises:
        BadInputError: ``name`` is not an export target.
    """
    if name not in TARGETS:
        raise BadInputError(f"unknown export target {name!r}: use one of {', '.join(TARGETS)}")
    return TARGETS[name]
