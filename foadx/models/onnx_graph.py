"""Reading an ONNX file a user hands foadx, and cleaning its graph for import into PyTorch.

``load_onnx`` is the one ONNX loader of foadx (``foadx.export`` re-exports it): a regular file
of at most 2 GiB (protobuf's own limit for one message), parsed and checked by onnx, and refused
when ONNX shape inference (with data propagation) shows a tensor of over ``MAX_TENSOR_BYTES`` at
batch 1: a file of a few hundred bytes can describe a ``ConstantOfShape`` of gigabytes, which
folding, importing or running it would allocate. Nothing in an ONNX file is ever executed, it
is data. ``clean_for_import`` turns what exporters write into
what onnx2torch imports and Torch-Pruning can prune:

- constants folded (onnx-graphsurgeon ``fold_constants`` + ``cleanup``): the legacy exporter
  writes each shared initializer through an ``Identity`` node, which onnx2torch 1.5.15 cannot
  resolve (a KeyError on the initializer's name);
- foadx's own PReLU rewrites (``foadx.export.passes``: ``Relu(x) - Mul(a, Relu(Neg(x)))`` and
  ``Relu(x) + Conv(Relu(Conv(x, -1)), -a)`` with 1x1 depthwise convolutions) folded back into
  one ``PRelu`` node, exactly the operator they replaced;
- ``Reshape(allowzero=1)`` (the dynamo exporter's) with a constant shape holding no 0 set to
  ``allowzero=0``: the attribute only changes the meaning of a 0 in the shape;
- opsets above ``IMPORT_MAX_OPSET`` converted down with onnx's version converter (opset 18
  moved the axes of every Reduce operator, and Pad's, into an input, and changed Split and
  Resize: onnx2torch 1.5.15 converts none of them at 18; the converter's adapters move constant
  axes back into the attribute, exactly).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from foadx.errors import BadInputError, first_line
from foadx.untrusted import MAX_TENSOR_BYTES, regular_file

MAX_ONNX_BYTES = 2 << 30  # protobuf cannot parse one message larger than 2 GiB
SHAPE_CONSTANT_ELEMENTS = 1_024  # initializers this small are kept for shape inference (shapes, scales)
IMPORT_MAX_OPSET = 17  # the newest opset onnx2torch 1.5.15 has a converter for every common operator at


def load_onnx(path: str | Path, *, with_weights: bool = True) -> onnx.ModelProto:
    """Loads and checks an ONNX file, turning every kind of corruption into BadInputError.

    Raises:
        BadInputError: missing, not a regular file, over 2 GiB, not parseable, failing
            ``onnx.checker``, without nodes, or with a tensor over ``MAX_TENSOR_BYTES`` at batch 1
            (``refuse_oversized_tensors``) (CLI exit code 3).
    """
    path = regular_file(path, "ONNX file")
    if path.stat().st_size > MAX_ONNX_BYTES:
        raise BadInputError(f"{path} holds {path.stat().st_size:,} bytes; an ONNX file holds at most 2 GiB")
    try:
        model = onnx.load(str(path), load_external_data=False)
        if with_weights:
            _refuse_oversized_external_data(model, path)
            onnx.load_external_data_for_model(model, str(path.parent))
        onnx.checker.check_model(model)
    except Exception as error:  # protobuf DecodeError, ValidationError, OSError ...
        raise BadInputError(f"{path} is not a valid ONNX model: {first_line(error)}") from error
    if len(model.graph.node) == 0:
        raise BadInputError(f"{path} is not a valid ONNX model: its graph has no nodes")
    refuse_oversized_tensors(model, str(path))
    return model


def _refuse_oversized_external_data(model: onnx.ModelProto, path: Path) -> None:
    """Refuses weights stored beside the file that add up to more than ``MAX_ONNX_BYTES`` (a
    196-byte file naming a 3 GB sparse file made 6.4 GB): what each tensor's ``length`` says, or
    its file's size past its ``offset`` where it says none; a file that is missing is left to the
    loader to name."""
    total = 0
    for tensor in onnx.external_data_helper._get_all_tensors(model):  # initializers and node attributes (no public walk)
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        entries = {entry.key: entry.value for entry in tensor.external_data}
        source = path.parent / entries.get("location", "")
        if "length" in entries and entries["length"].isdigit():
            total += int(entries["length"])
        elif source.is_file():
            offset = int(entries["offset"]) if entries.get("offset", "").isdigit() else 0
            total += max(source.stat().st_size - offset, 0)
    if total > MAX_ONNX_BYTES:
        raise BadInputError(f"{path} names {total:,} bytes of external weights; foadx reads at most 2 GiB")


def refuse_oversized_tensors(model: onnx.ModelProto, where: str) -> None:
    """Refuses a graph in which one tensor would hold more than ``MAX_TENSOR_BYTES``: the shapes
    ONNX shape inference with data propagation gives every tensor the graph computes or takes
    (subgraphs included; the weights it stores are in proportion to the file), with the inputs'
    symbolic dimensions (a dynamic batch) set to 1 and fixed ones as the file fixes them. What
    cannot be sized before it runs is refused too: control flow (``_refuse_control_flow``) and a
    node that makes a tensor of a size shape inference cannot know (``ALLOCATING_OPS``).

    Raises:
        BadInputError: a tensor over the limit (named, with its shape and size), control flow,
            an allocation of unknown size, or a graph shape inference cannot read.
    """
    _refuse_control_flow(model.graph, where)
    skeleton = _shape_skeleton(model)
    first_input = skeleton.graph.input[0].type.tensor_type.shape.dim if skeleton.graph.input else []
    batch = first_input[0].dim_value if first_input else 1
    try:
        inferred = onnx.shape_inference.infer_shapes(skeleton, check_type=False, strict_mode=False, data_prop=True)
    except Exception as error:  # InferenceError, ValidationError, RuntimeError by operator
        raise BadInputError(f"{where}: ONNX shape inference cannot read the graph: {first_line(error, 200)}") from error
    weights = {tensor.name for tensor in model.graph.initializer}  # stored in the file: in proportion to it
    _refuse_unbounded_allocations(inferred.graph, where)
    for value in _value_infos(inferred.graph):
        size = _tensor_bytes(value.type) if value.name not in weights else None
        if size is not None and size > MAX_TENSOR_BYTES:
            shape = "x".join(str(dim.dim_value) for dim in value.type.tensor_type.shape.dim)
            raise BadInputError(f"{where}: the tensor {value.name!r} ({shape}, "
                                f"{onnx.TensorProto.DataType.Name(value.type.tensor_type.elem_type).lower()}) would "
                                f"hold {size / 2**30:.3g} GiB at batch {batch}; foadx refuses any tensor over "
                                f"{MAX_TENSOR_BYTES / 2**30:g} GiB")


# Range is not among them: exporters build 1-D index tensors with it from shapes data propagation
# cannot always follow (torchvision's ConvNeXt), and a refusal there would refuse real models.
ALLOCATING_OPS = frozenset({"ConstantOfShape", "Expand", "Tile", "Resize", "Upsample", "Pad", "OneHot",
                            "EyeLike", "RandomNormal", "RandomUniform", "Bernoulli", "Multinomial"})


def _refuse_control_flow(graph: onnx.GraphProto, where: str) -> None:
    """Refuses a node holding a subgraph (Loop, Scan, If): how often or which branch runs depends
    on values, so what it allocates cannot be known before it runs (a Loop doubling a tensor 29
    times took 9.9 GB); image CNNs have none."""
    for node in graph.node:
        if any(attribute.HasField("g") or attribute.graphs for attribute in node.attribute):
            raise BadInputError(f"{where}: its graph holds {node.op_type} control flow{_named(node)}; foadx runs "
                                "feed-forward image models, whose tensors can be sized before they run")


def _refuse_unbounded_allocations(graph: onnx.GraphProto, where: str) -> None:
    """Refuses a node of ``ALLOCATING_OPS`` whose output shape inference could not size: its
    size comes from values known only when it runs (a ConstantOfShape sized by the image's
    maximum made 2.6 GB)."""
    sized = {value.name for value in (*graph.input, *graph.value_info, *graph.output)
             if _tensor_bytes(value.type) is not None}
    for node in graph.node:
        unsized = [name for name in node.output if name and name not in sized]
        if node.op_type in ALLOCATING_OPS and unsized:
            raise BadInputError(f"{where}: the size of the output of {node.op_type}{_named(node)} depends on "
                                "values known only when it runs; foadx sizes every tensor before it runs")


def _named(node: onnx.NodeProto) -> str:
    return f" (node {node.name[:80]!r})" if node.name else ""


def _shape_skeleton(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model without its weights, for shape inference: each initializer that is not a small
    integer one (a shape, axes) becomes a graph input of its type and shape; symbolic or unset
    input dimensions become 1; declared intermediate and output shapes are dropped (inference
    gives them, a file's own claims are not trusted)."""
    skeleton = onnx.ModelProto(ir_version=model.ir_version, opset_import=model.opset_import, functions=model.functions)
    graph = skeleton.graph
    graph.node.extend(model.graph.node)
    graph.sparse_initializer.extend(model.graph.sparse_initializer)
    listed = {value.name for value in model.graph.input}
    for value in model.graph.input:
        graph.input.add().CopyFrom(value)
    for tensor in model.graph.initializer:
        if _is_shape_constant(tensor):
            graph.initializer.add().CopyFrom(tensor)
        elif tensor.name not in listed:
            graph.input.append(onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, tensor.dims))
    for value in graph.input:
        for dim in value.type.tensor_type.shape.dim:
            if not dim.HasField("dim_value") or dim.dim_value < 1:
                dim.dim_value = 1
    for value in model.graph.output:
        graph.output.append(onnx.helper.make_tensor_value_info(value.name, value.type.tensor_type.elem_type, None))
    return skeleton


def _is_shape_constant(tensor: onnx.TensorProto) -> bool:
    """A small initializer stored in the file: a shape, axes, or Resize's scales (what shape
    inference and data propagation read)."""
    return tensor.data_location != onnx.TensorProto.EXTERNAL and math.prod(tensor.dims) <= SHAPE_CONSTANT_ELEMENTS


def _value_infos(graph: onnx.GraphProto) -> Iterator[onnx.ValueInfoProto]:
    """Every typed value of a graph and of the subgraphs its nodes hold (If, Loop, Scan)."""
    yield from (*graph.input, *graph.value_info, *graph.output)
    for node in graph.node:
        for attribute in node.attribute:
            for subgraph in (*([attribute.g] if attribute.HasField("g") else []), *attribute.graphs):
                yield from _value_infos(subgraph)


def _tensor_bytes(value_type: onnx.TypeProto) -> int | None:
    """Bytes of a tensor of fully known shape and a numeric element type, else None."""
    tensor = value_type.tensor_type
    dims = tensor.shape.dim
    if not value_type.HasField("tensor_type") or not tensor.HasField("shape") or \
            not all(dim.HasField("dim_value") and dim.dim_value >= 0 for dim in dims):
        return None
    try:
        itemsize = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)).itemsize
    except (KeyError, TypeError):  # UNDEFINED, or a type numpy cannot hold
        return None
    return math.prod(dim.dim_value for dim in dims) * itemsize


def file_sha256(path: str | Path) -> str:
    """The sha256 hex digest of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_opset(model: onnx.ModelProto) -> int:
    """The version of the default (ai.onnx) operator set the model imports."""
    return next((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), 0)


def clean_for_import(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with constants folded, foadx's PReLU rewrites undone, Reshape's allowzero
    dropped where it changes nothing, and its opset at most ``IMPORT_MAX_OPSET`` (see the module
    docstring). The computation is unchanged.

    Raises:
        BadInputError: the graph cannot be folded or converted to ``IMPORT_MAX_OPSET``.
    """
    try:
        graph = gs.import_onnx(model)
        graph.fold_constants().cleanup().toposort()
        _undo_prelu_rewrites(graph)
        _drop_needless_allowzero(graph)
        graph.cleanup().toposort()
        cleaned = gs.export_onnx(graph)
    except Exception as error:  # graphsurgeon raises many types on graphs it cannot fold
        raise BadInputError(f"the ONNX graph cannot be folded for import: {str(error).splitlines()[0][:200]}") from error
    del cleaned.opset_import[:]  # graphsurgeon keeps only the default domain's version
    cleaned.opset_import.extend(model.opset_import)
    if default_opset(cleaned) > IMPORT_MAX_OPSET:
        cleaned = _convert_down(cleaned)
    return cleaned


def _convert_down(model: onnx.ModelProto) -> onnx.ModelProto:
    from onnx import version_converter

    try:
        return version_converter.convert_version(model, IMPORT_MAX_OPSET)
    except Exception as error:  # the converter raises RuntimeError or ValidationError by operator
        missing = re.search(r"No Adapter From Version \$?(\d+) for (\w+)", str(error))
        reason = (f"onnx has no adapter to take its {missing[2]} nodes from opset {missing[1]} down"
                  if missing else str(error).splitlines()[0][:200])
        raise BadInputError(f"the ONNX graph at opset {default_opset(model)} cannot be converted to opset "
                            f"{IMPORT_MAX_OPSET}, the newest onnx2torch imports: {reason}; export the model at "
                            f"opset {IMPORT_MAX_OPSET} or below (foadx export --opset {IMPORT_MAX_OPSET})") from error


def _constant(tensor: gs.Tensor) -> np.ndarray | None:
    return np.asarray(tensor.values) if isinstance(tensor, gs.Constant) else None


def _producer(tensor: gs.Tensor, op: str) -> gs.Node | None:
    """The node of type ``op`` that writes ``tensor`` (and nothing else reads), else None."""
    if len(tensor.inputs) != 1 or tensor.inputs[0].op != op or len(tensor.outputs) != 1:
        return None
    return tensor.inputs[0]


def _relu_input(tensor: gs.Tensor) -> gs.Tensor | None:
    relu = _producer(tensor, "Relu")
    return relu.inputs[0] if relu is not None else None


def _elementwise_slope(positive: gs.Tensor, scaled: gs.Tensor) -> tuple[gs.Tensor, np.ndarray] | None:
    """``Sub(Relu(x), Mul(a, Relu(Neg(x))))`` -> (x, a)."""
    multiply, x = _producer(scaled, "Mul"), _relu_input(positive)
    if multiply is None or x is None:
        return None
    for slope_side, other in ((0, 1), (1, 0)):
        slope = _constant(multiply.inputs[slope_side])
        inner = _relu_input(multiply.inputs[other])
        negate = _producer(inner, "Neg") if inner is not None else None
        if slope is not None and negate is not None and negate.inputs[0] is x:
            return x, slope
    return None


def _depthwise_slope(scaled: gs.Tensor, positive: gs.Tensor) -> tuple[gs.Tensor, np.ndarray] | None:
    """``Add(Conv(Relu(Conv(x, -1)), -a), Relu(x))`` (1x1 depthwise, no bias) -> (x, a)."""
    outer, x = _producer(scaled, "Conv"), _relu_input(positive)
    inner_out = _relu_input(outer.inputs[0]) if outer is not None else None
    inner = _producer(inner_out, "Conv") if inner_out is not None else None
    if x is None or inner is None or inner.inputs[0] is not x or len(outer.inputs) != 2 or len(inner.inputs) != 2:
        return None
    minus_one, minus_slope = _constant(inner.inputs[1]), _constant(outer.inputs[1])
    if minus_one is None or minus_slope is None or not np.all(minus_one == -1.0):
        return None
    channels = minus_slope.shape[0]
    depthwise = all(node.attrs.get("group") == channels and minus_slope.shape == (channels, 1, 1, 1)
                    for node in (inner, outer))
    return (x, (-minus_slope).reshape(channels, 1, 1)) if depthwise and minus_one.shape == minus_slope.shape else None


def _undo_prelu_rewrites(graph: gs.Graph) -> int:
    """Replaces each PReLU rewrite by one PRelu node; returns how many."""
    found = 0
    for node in list(graph.nodes):
        match = None
        if node.op == "Sub" and len(node.inputs) == 2:
            match = _elementwise_slope(node.inputs[0], node.inputs[1])
        elif node.op == "Add" and len(node.inputs) == 2:
            match = _depthwise_slope(node.inputs[0], node.inputs[1]) or _depthwise_slope(node.inputs[1], node.inputs[0])
        if match is None:
            continue
        x, slope = match
        output = node.outputs[0]
        node.outputs.clear()
        slope_constant = gs.Constant(f"{node.name or 'prelu'}/slope_{found}", slope.astype(np.float32))
        graph.layer(op="PRelu", inputs=[x, slope_constant], outputs=[output], name=f"{node.name or 'PRelu'}/PRelu_{found}")
        found += 1
    return found


def _drop_needless_allowzero(graph: gs.Graph) -> None:
    for node in graph.nodes:
        shape = _constant(node.inputs[1]) if node.op == "Reshape" and len(node.inputs) == 2 else None
        if shape is not None and node.attrs.get("allowzero", 0) == 1 and not np.any(shape == 0):
            node.attrs["allowzero"] = 0
