"""An ONNX file -> a standard PyTorch ``nn.Module`` that foadx prunes like any other model.

``import_onnx(path)`` loads the file (``foadx.models.onnx_graph.load_onnx``: size-limited,
checked, never executed), cleans its graph (``clean_for_import``), refuses every operator
onnx2torch cannot import in one line naming them all, converts with onnx2torch (a
``torch.fx.GraphModule``), then normalises the result into standard modules so that
Torch-Pruning's dependency graph sees parameters it can cut:

- ``PRelu(x, slope)`` (onnx2torch passes the slope as a graph constant) -> ``nn.PReLU`` owning
  its slope as a parameter;
- ``MatMul(x, W)`` with a constant 2-D ``W`` (and a following ``Add`` of a constant bias) ->
  ``nn.Linear``; ``Gemm`` with constant weights is already an ``nn.Linear``;
- ``Reshape`` of an (N, ...) tensor to (N, rest) -> ``nn.Flatten`` (batch-independent);
- ``BatchNormalization`` -> ``nn.BatchNorm1d/2d``, ``Flatten`` -> ``nn.Flatten`` (onnx2torch's own).

Exporters fold BatchNorm into the preceding convolution, so an import usually holds BN only
where no convolution precedes it (arcface_torch's ``features`` BN1d, IResNet's pre-activation
BNs). The module carries foadx provenance whose source spec is the file's resolved path and
whose ``kwargs`` record its sha256, so an artifact re-imports exactly this file.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import fx, nn

from foadx.errors import ArtifactError, BadInputError, first_line
from foadx.models.onnx_graph import clean_for_import, default_opset, file_sha256, load_onnx
from foadx.provenance import TASKS, ModelSource, Plan, Provenance, record_provenance
from foadx.untrusted import MAX_CHANNELS, MAX_SIDE, regular_file

FACE_INPUT = (112, 112)  # insightface recognition models (arcface_torch, the model-zoo packs)
PIXEL_STD = 1.0 / 255.0  # foadx feeds [0, 1] images: std 1/255 feeds raw 0..255 pixels


@dataclass(frozen=True)
class OnnxContract:
    """How to feed an ONNX file and what comes out: input (C, H, W), mean/std per channel (of
    [0, 1] pixels, as foadx's ``ModelSource``), task, and what was assumed (None when the file
    says it: foadx's own metadata)."""

    input_chw: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    task: str
    assumed: str | None


def input_chw(model: onnx.ModelProto, where: str) -> tuple[int, int, int]:
    """The (C, H, W) of the model's one N x C x H x W float32 input (foadx feeds float32 images),
    with at most ``MAX_CHANNELS`` channels and ``MAX_SIDE`` pixels a side (``foadx.untrusted``'s
    bounds for what a file declares, far above any image model).

    Raises:
        BadInputError: more than one input, not float32, not 4-D with fixed C, H, W, or C, H or W
            above its bound (exit code 3).
    """
    inputs = model.graph.input
    if len(inputs) != 1:
        raise BadInputError(f"{where} has {len(inputs)} inputs; foadx runs single-input image models")
    dims = [dim.dim_value for dim in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or min(dims[1:]) < 1:
        raise BadInputError(f"{where}: foadx runs N x C x H x W image models with fixed C, H, W")
    element = inputs[0].type.tensor_type.elem_type
    if element != onnx.TensorProto.FLOAT:
        raise BadInputError(f"{where}: its input {inputs[0].name!r} holds "
                            f"{onnx.TensorProto.DataType.Name(element).lower()}; foadx feeds float32 images")
    if dims[1] > MAX_CHANNELS or max(dims[2:]) > MAX_SIDE:
        raise BadInputError(f"{where}: its input is {dims[1]}x{dims[2]}x{dims[3]} (C x H x W); foadx takes at most "
                            f"{MAX_CHANNELS} channels and {MAX_SIDE} pixels a side")
    return dims[1], dims[2], dims[3]


def onnx_contract(model: onnx.ModelProto, where: str) -> OnnxContract:
    """The input contract and task of an ONNX file: what foadx's metadata records (mean/std of
    one value per channel, std > 0; a task of ``foadx.provenance.TASKS``), else insightface's rule
    for recognition models (``model_zoo.ArcFaceONNX``: a graph whose first nodes hold both a Sub
    and a Mul normalises itself and takes raw pixels, any other takes (x - 127.5) / 127.5) and
    the face task for a 112x112 input with one 2-D output.

    Raises:
        BadInputError: as ``input_chw``.
    """
    chw = input_chw(model, where)
    props = {prop.key: prop.value for prop in model.metadata_props}
    recorded = _recorded_normalisation(props, chw[0])
    task = props.get("foadx.task")
    if recorded is not None and task in TASKS:
        return OnnxContract(chw, *recorded, task, None)
    names = [f"{node.op_type} {node.name}" for node in model.graph.node[:8]]
    normalises = any("Sub" in n or "_minus" in n for n in names) and any("Mul" in n or "_mul" in n for n in names)
    rule = ((0.0,) * chw[0], (PIXEL_STD,) * chw[0]) if normalises else ((0.5,) * chw[0], (0.5,) * chw[0])
    outputs = model.graph.output
    face = chw[1:] == FACE_INPUT and len(outputs) == 1 and len(outputs[0].type.tensor_type.shape.dim) == 2
    task = task if task in TASKS else "face" if face else "unknown"
    said = "raw 0..255 pixels (its graph normalises)" if normalises else "(x - 127.5) / 127.5"
    fed = "its recorded mean/std" if recorded else f"{said} as insightface does"
    return OnnxContract(chw, *(recorded or rule), task, f"no complete foadx metadata: fed {fed}; task {task}"
                        + ("" if face or "foadx.task" in props else " (not a 112x112 model with one 2-D embedding output)"))


def _recorded_normalisation(props: dict[str, str], channels: int) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """foadx's recorded mean/std when both hold one finite number per channel (std > 0), else None."""
    try:
        mean, std = (json.loads(props.get(key, "null")) for key in ("foadx.mean", "foadx.std"))
    except ValueError:
        return None
    values = [mean, std]
    if not all(isinstance(v, list) and len(v) == channels and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                                   and math.isfinite(x) for x in v) for v in values):
        return None
    return (tuple(map(float, mean)), tuple(map(float, std))) if min(std) > 0 else None


def import_onnx(path: str | Path, input_size: tuple[int, int] | None = None, *, sha256: str | None = None) -> nn.Module:
    """Imports an ONNX file as a prunable ``nn.Module`` in eval mode that takes (N, C, H, W).

    Args:
        path: the ``.onnx`` file (weights inside it; external data is read from beside it).
        input_size: (H, W); must be the file's own when given.
        sha256: the digest the file must have (an artifact's record of its source).

    Returns:
        The module, carrying provenance: spec = the resolved path, kwargs = {"sha256": digest},
        the file's input (C, H, W), mean/std and task (``onnx_contract``).

    Raises:
        BadInputError: an unreadable or invalid file, an input that is not one N x C x H x W
            float32 image of bounded size, operators onnx2torch cannot import (all named), a graph
            that does not run on its own input shape, another input size (exit 3).
        ArtifactError: the file's digest is not ``sha256`` (it changed since it was pruned).
    """
    path = regular_file(Path(path).resolve(), "ONNX file")
    digest = file_sha256(path)
    if sha256 is not None and digest != sha256:
        raise ArtifactError(f"{path} has changed since the plan recorded it (sha256 {digest[:12]}..., "
                            f"recorded {sha256[:12]}...): give the ONNX file that was pruned")
    model = load_onnx(path)
    contract = onnx_contract(model, str(path))
    if input_size is not None and tuple(input_size) != contract.input_chw[1:]:
        raise BadInputError(f"{path} takes {contract.input_chw[1]}x{contract.input_chw[2]} inputs, not "
                            f"{input_size[0]}x{input_size[1]}")
    batch = model.graph.input[0].type.tensor_type.shape.dim[0].dim_value or 1  # a fixed batch, else 1
    module = normalise(_convert(clean_for_import(model), str(path)), (batch, *contract.input_chw), str(path))
    source = ModelSource(str(path), contract.input_chw[1:], {"sha256": digest}, contract.mean, contract.std,
                         input_channels=contract.input_chw[0])
    record_provenance(module, Provenance(Plan(source, weights=str(path)), contract.task))
    return module.eval()


def _convert(model: onnx.ModelProto, where: str) -> fx.GraphModule:
    from onnx2torch import convert
    from onnx2torch.node_converters import get_converter

    opset = default_opset(model)
    missing = []
    for node in model.graph.node:
        try:
            get_converter(node.op_type, opset if node.domain in ("", "ai.onnx") else 1, node.domain)
        except NotImplementedError:
            missing.append(f"{node.domain + '.' if node.domain else ''}{node.op_type}")
    if missing:
        raise BadInputError(f"{where}: onnx2torch cannot import the operator(s) {', '.join(sorted(set(missing)))} "
                            f"(opset {opset}); foadx prunes graphs of standard CNN operators")
    try:
        return convert(model)
    except Exception as error:  # a converter refusing an attribute raises NotImplementedError, others vary
        raise BadInputError(f"{where}: onnx2torch cannot import it: {str(error).splitlines()[0][:200]}") from error


def normalise(module: fx.GraphModule, input_shape: tuple[int, int, int, int], where: str) -> fx.GraphModule:
    """Rewrites an onnx2torch module into standard modules (module docstring) in place, drops
    the constants nothing reads any more, and returns it recompiled. ``input_shape``: (N, C, H,
    W) of an input the graph takes (its fixed batch, if it has one); ``where`` names the file.

    Raises:
        BadInputError: the graph does not run on a zero input of ``input_shape``.
    """
    shapes = _output_shapes(module.eval(), torch.zeros(*input_shape), where)
    for node in list(module.graph.nodes):
        if node.op != "call_module":
            continue
        kind = type(module.get_submodule(node.target)).__name__
        if kind == "OnnxPReLU":
            _to_prelu(module, node)
        elif kind == "OnnxMatMul":
            _to_linear(module, node)
        elif kind == "OnnxReshape":
            _to_flatten(module, node, shapes)
    module.graph.eliminate_dead_code()
    module.delete_all_unused_submodules()
    _drop_unread_constants(module)
    module.recompile()
    return module


def _output_shapes(module: fx.GraphModule, example: torch.Tensor, where: str) -> dict[str, tuple[int, ...]]:
    """Node name -> the shape of its (tensor) output on ``example``. ShapeProp prints the
    traceback of a failing node to stderr before it raises: that print is swallowed, the failure
    becomes one line.

    Raises:
        BadInputError: a node fails on ``example`` (the first line of its error).
    """
    from torch.fx.passes.shape_prop import ShapeProp, TensorMetadata

    try:
        with contextlib.redirect_stderr(io.StringIO()):
            ShapeProp(module).propagate(example)
    except Exception as error:  # whatever the failing operator raises, wrapped in ShapeProp's RuntimeError
        raise BadInputError(f"{where}: the graph does not run on a {'x'.join(map(str, example.shape))} input: "
                            f"{first_line(error.__cause__ or error, 200)}") from error
    return {node.name: tuple(node.meta["tensor_meta"].shape) for node in module.graph.nodes
            if isinstance(node.meta.get("tensor_meta"), TensorMetadata)}


def _constant(module: fx.GraphModule, node: Any) -> torch.Tensor | None:
    return module.get_buffer(node.target) if isinstance(node, fx.Node) and node.op == "get_attr" else None


def _to_prelu(module: fx.GraphModule, node: fx.Node) -> None:
    slope = _constant(module, node.args[1]) if len(node.args) == 2 else None
    if slope is None or slope.dim() > 1 and math.prod(slope.shape) != max(slope.shape):
        return  # a slope computed in the graph, or not per channel: left as it is
    prelu = nn.PReLU(slope.numel())
    prelu.weight.data.copy_(slope.reshape(-1))
    module.add_submodule(node.target, prelu)
    node.args = (node.args[0],)


def _to_linear(module: fx.GraphModule, node: fx.Node) -> None:
    weight = _constant(module, node.args[1])
    if weight is None or weight.dim() != 2:
        return
    users = list(node.users)
    add = users[0] if len(users) == 1 and users[0].op == "call_module" else None
    bias = None
    if add is not None and getattr(module.get_submodule(add.target), "math_op_function", None) is torch.add:
        bias = next((_constant(module, arg) for arg in add.args if arg is not node), None)
    fold = bias is not None and tuple(bias.shape) == (weight.shape[1],)
    linear = nn.Linear(weight.shape[0], weight.shape[1], bias=fold)
    linear.weight.data.copy_(weight.t())
    if fold:
        linear.bias.data.copy_(bias)
        add.replace_all_uses_with(node)
        module.graph.erase_node(add)
    module.add_submodule(node.target, linear)
    node.args = (node.args[0],)


def _to_flatten(module: fx.GraphModule, node: fx.Node, shapes: dict[str, tuple[int, ...]]) -> None:
    before, after = shapes.get(node.args[0].name), shapes.get(node.name)
    if before and after and len(before) >= 2 and after == (before[0], math.prod(before[1:])):
        module.add_submodule(node.target, nn.Flatten(1))
        node.args = (node.args[0],)


def _drop_unread_constants(module: fx.GraphModule) -> None:
    """Deletes the graph constants (onnx2torch's ``initializers`` buffers) no node reads."""
    read = {node.target for node in module.graph.nodes if node.op == "get_attr"}
    container = getattr(module, "initializers", None)
    for name, _ in list(container.named_buffers()) if container is not None else []:
        if f"initializers.{name}" not in read:
            delattr(container, name)
