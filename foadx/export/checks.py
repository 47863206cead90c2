"""Deployability checks in the spirit of insightface's ONNX acceptance test.

Serving stacks assume one 4-D image input with a dynamic batch, fp32 weights and a single
output; face-recognition stacks also cap the embedding at 512 dimensions. A file that breaks one
of these may still be correct, so the checks are reported and fail only when asked (strict).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import onnx

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
