"""Deployability checks in the spirit of insightface's ONNX acceptance test.

Serving stacks assume one 4-D image input with a dynamic batch, fp32 weights and a single
output; face-recognition stacks also cap the embedding at 512 dimensions. A file that breaks one
of these may still be correct, so the checks are reported and fail only when asked (strict).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import onnx

from foadx.errors import BadInputError

MAX_FACE_EMBEDDING = 512


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [dim.dim_param or (dim.dim_value if dim.HasField("dim_value") else "?")
            for dim in value.type.tensor_type.shape.dim]


def deployability_checks(model: onnx.ModelProto, task: str) -> list[Check]:
    initializer_names = {tensor.name for tensor in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in initializer_names]
    outputs = list(model.graph.output)
    checks = []
    input_dims = _dims(inputs[0]) if len(inputs) == 1 else []
    checks.append(Check("single 4-D input", len(inputs) == 1 and len(input_dims) == 4,
                        f"{len(inputs)} input(s); shape {input_dims}"))
    batch = input_dims[0] if input_dims else None
    checks.append(Check("dynamic batch", isinstance(batch, str),
                        f"batch dimension is {batch!r}"))
    float_types = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.DOUBLE}
    not_fp32 = [tensor.name for tensor in model.graph.initializer
                if tensor.data_type in float_types and tensor.data_type != onnx.TensorProto.FLOAT]
    checks.append(Check("fp32 weights", not not_fp32,
                        "all float weights are fp32" if not not_fp32 else f"{len(not_fp32)} non-fp32 weights, e.g. {not_fp32[0]}"))
    checks.append(Check("single output", len(outputs) == 1, f"{len(outputs)} output(s)"))
    if task == "face" and outputs:
        width = _dims(outputs[0])[-1]
        ok = isinstance(width, int) and width <= MAX_FACE_EMBEDDING
        checks.append(Check(f"embedding <= {MAX_FACE_EMBEDDING}-d", ok, f"embedding width {width}"))
    return checks


# What insightface's recognition loader (``model_zoo.ArcFaceONNX``) and its ONNX acceptance
# script assume of a recognition model. The loader guesses the normalisation from node names:
# a "Sub"/"_minus" and a "Mul"/"_mul" among the first 8 nodes mean "normalised in the graph"
# (mean 0, std 1); otherwise it feeds (x - 127.5) / 127.5.
INSIGHTFACE_MIN_SIDE = 112
INSIGHTFACE_SIDE_MULTIPLE = 16
INSIGHTFACE_MAX_BYTES = 1024 * 1024 * 1024
INSIGHTFACE_NAME_SCAN = 8


def _guessed_in_graph_normalisation(model: onnx.ModelProto) -> bool:
    names = [node.name for node in model.graph.node[:INSIGHTFACE_NAME_SCAN]]
    return (any(name.startswith(("Sub", "_minus")) for name in names)
            and any(name.startswith(("Mul", "_mul")) for name in names))


def insightface_checks(model: onnx.ModelProto, metadata: dict[str, object]) -> list[Check]:
    """The checks of ``deployability_checks`` for a face model, plus insightface's own."""
    checks = [check for check in deployability_checks(model, "face") if check.name != "dynamic batch"]
    initializer_names = {tensor.name for tensor in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in initializer_names]
    dims = _dims(inputs[0]) if inputs else []
    height, width = (dims[2], dims[3]) if len(dims) == 4 else (None, None)
    square = isinstance(height, int) and height == width
    checks.append(Check("square input", square, f"input {height}x{width}"))
    side_ok = square and height >= INSIGHTFACE_MIN_SIDE and height % INSIGHTFACE_SIDE_MULTIPLE == 0
    checks.append(Check(f"side >= {INSIGHTFACE_MIN_SIDE}, divisible by {INSIGHTFACE_SIDE_MULTIPLE}", side_ok,
                        f"side {height}"))
    output_rank = len(_dims(model.graph.output[0])) if len(model.graph.output) else 0
    checks.append(Check("2-D output", output_rank == 2, f"output rank {output_rank}"))
    task = metadata.get("task")
    checks.append(Check("a face embedding, not class logits", task != "classify", f"task {task}"))
    mean, std = metadata.get("mean"), metadata.get("std")
    insightface_norm = mean == [0.5, 0.5, 0.5] and std == [0.5, 0.5, 0.5]
    checks.append(Check("normalisation (x - 127.5) / 127.5", insightface_norm,
                        f"the model expects mean {mean}, std {std} on pixels / 255"))
    checks.append(Check("RGB input", metadata.get("channel_order") == "RGB", f"channel order {metadata.get('channel_order')}"))
    guessed = _guessed_in_graph_normalisation(model)
    checks.append(Check("no Sub/Mul node names in the first 8 nodes", not guessed,
                        "insightface would assume the graph normalises its input" if guessed else "none"))
    size = model.ByteSize()
    checks.append(Check("size <= 1 GiB", size <= INSIGHTFACE_MAX_BYTES, f"{size:,} bytes"))
    return checks


def refuse_failed_checks(checks: list[Check], target: str) -> None:
    failed = [check for check in checks if not check.passed]
    if failed:
        shown = "; ".join(f"{check.name} ({check.detail})" for check in failed)
        raise BadInputError(f"not exportable for {target}: {shown}")
