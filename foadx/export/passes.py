"""Graph passes on an exported ONNX model, through onnx-graphsurgeon.

``clean`` folds constants, drops dead nodes and sorts topologically: the exporter leaves shape
arithmetic and unused initializers that every runtime would otherwise re-derive or load.

``rewrite_prelu`` replaces each ``PRelu(x, a)`` with ``relu(x) - a * relu(-x)``, which is exact
in floating point: for x > 0 it computes x - a*0 = x, for x <= 0 it computes 0 - a*(-x) = a*x,
and negation, multiplying by zero and adding zero are exact. It exists for speed on
onnxruntime's CPU provider, whose PRelu kernel cannot run in the blocked NCHWc layout of its
convolutions. Two forms:

- ``depthwise``: the negation and the slope product are 1x1 depthwise convolutions with weights
  -1 and -a: ``Relu(x) + Conv(Relu(Conv(x, -1)), -a)``. onnxruntime fuses the inner Relu and the
  final Add into its NCHWc convolutions, so the activations never leave the blocked layout.
- ``elementwise``: ``Relu(x) - Mul(a, Relu(Neg(x)))``, the formula as plain ops; portable, but
  every PReLU then costs a layout reorder on onnxruntime.
- ``auto`` (default): depthwise where the channel count is a multiple of 8 (onnxruntime's NCHWc
  kernels only take such widths, so elsewhere the two extra convolutions buy nothing),
  elementwise elsewhere.

Numbers for both are in docs/results.md (``benchmarks/bench_export.py``). TensorRT fuses PReLU
itself and needs no rewrite.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs


def _export(graph: gs.Graph, like: onnx.ModelProto) -> onnx.ModelProto:
    model = gs.export_onnx(graph)
    model.ir_version = like.ir_version
    del model.opset_import[:]
    model.opset_import.extend(like.opset_import)
    return model


def clean(model: onnx.ModelProto) -> onnx.ModelProto:
    """Constant folding, dead-node removal and a topological sort."""
    graph = gs.import_onnx(model)
    graph.fold_constants().cleanup(remove_unused_graph_inputs=False).toposort()
    return _export(graph, model)


PRELU_FORMS = ("auto", "depthwise", "elementwise")
NCHWC_MULTIPLE = 8


def _depthwise_slope(slope: gs.Tensor) -> np.ndarray | None:
    """The slope as (C, 1, 1, 1) depthwise weights, when it is a per-channel constant
    broadcasting over NCHW ((C, 1, 1) from the legacy exporter, (1, C, 1, 1) from dynamo)."""
    if not isinstance(slope, gs.Constant):
        return None
    values = np.asarray(slope.values)
    per_channel = values.ndim in (3, 4) and values.shape[-2:] == (1, 1) and values.shape[:-3] in ((), (1,))
    if not per_channel or values.size < 2 or values.dtype != np.float32:
        return None  # a shared scalar slope does not say how many channels x has
    return values.reshape(-1, 1, 1, 1)


def _depthwise_prelu(graph: gs.Graph, x: gs.Tensor, weights: np.ndarray, y: gs.Tensor, prefix: str) -> None:
    channels = weights.shape[0]
    minus_one = gs.Constant(f"{prefix}/minus_one", np.full((channels, 1, 1, 1), -1.0, dtype=np.float32))
    minus_slope = gs.Constant(f"{prefix}/minus_slope", (-weights).astype(np.float32))
    depthwise = {"group": channels, "kernel_shape": [1, 1]}
    positive = graph.layer(op="Relu", inputs=[x], outputs=[f"{prefix}/pos"], name=f"{prefix}/Relu_pos")[0]
    negated = graph.layer(op="Conv", inputs=[x, minus_one], outputs=[f"{prefix}/neg"],
                          attrs=depthwise, name=f"{prefix}/Conv_neg")[0]
    negative = graph.layer(op="Relu", inputs=[negated], outputs=[f"{prefix}/negpart"], name=f"{prefix}/Relu_neg")[0]
    scaled = graph.layer(op="Conv", inputs=[negative, minus_slope], outputs=[f"{prefix}/scaled"],
                         attrs=depthwise, name=f"{prefix}/Conv_slope")[0]
    graph.layer(op="Add", inputs=[scaled, positive], outputs=[y], name=f"{prefix}/Add")


def _elementwise_prelu(graph: gs.Graph, x: gs.Tensor, slope: gs.Tensor, y: gs.Tensor, prefix: str) -> None:
    positive = graph.layer(op="Relu", inputs=[x], outputs=[f"{prefix}/pos"], name=f"{prefix}/Relu_pos")[0]
    negated = graph.layer(op="Neg", inputs=[x], outputs=[f"{prefix}/neg"], name=f"{prefix}/Neg")[0]
    negative = graph.layer(op="Relu", inputs=[negated], outputs=[f"{prefix}/negpart"], name=f"{prefix}/Relu_neg")[0]
    scaled = graph.layer(op="Mul", inputs=[slope, negative], outputs=[f"{prefix}/scaled"], name=f"{prefix}/Mul")[0]
    graph.layer(op="Sub", inputs=[positive, scaled], outputs=[y], name=f"{prefix}/Sub")


def rewrite_prelu(model: onnx.ModelProto, form: str = "auto") -> tuple[onnx.ModelProto, int]:
    """Returns the model with every PRelu node rewritten, and how many there were.

    A PRelu whose slope is not a per-channel constant gets the elementwise form whatever ``form`` is.
    """
    if form not in PRELU_FORMS:
        raise ValueError(f"PReLU rewrite form must be one of {PRELU_FORMS}, got {form!r}")
    graph = gs.import_onnx(model)
    rewritten = 0
    for node in [node for node in graph.nodes if node.op == "PRelu"]:
        x, slope = node.inputs
        y = node.outputs[0]
        node.outputs.clear()
        prefix = node.name or f"prelu_{rewritten}"
        weights = _depthwise_slope(slope) if form != "elementwise" else None
        if weights is not None and form == "auto" and weights.shape[0] % NCHWC_MULTIPLE:
            weights = None
        if weights is not None:
            _depthwise_prelu(graph, x, weights, y, prefix)
        else:
            _elementwise_prelu(graph, x, slope, y, prefix)
        rewritten += 1
    graph.cleanup(remove_unused_graph_inputs=False).toposort()
    return _export(graph, model), rewritten
