"""The metadata_props foadx writes into every ONNX file, and reading them back.

A deployed file must say how to feed it (input name and shape, mean/std, channel order) and what
comes out, without the training code beside it. Normalisation is described, never baked into the
graph, so the same file serves pipelines that normalise on the GPU or in a preprocessing step.
"""

from __future__ import annotations

import json
import math
from typing import Any

import onnx

from foadx.errors import BadInputError
from foadx.models.onnx_graph import load_onnx  # noqa: F401 (the one ONNX loader, re-exported here)

PREFIX = "foadx."
JSON_KEYS = ("training_data", "source_model", "input_shape", "mean", "std")


def write_metadata(model: onnx.ModelProto, values: dict[str, Any]) -> None:
    """Sets ``foadx.<key>`` props (lists and dicts as JSON), replacing earlier foadx props."""
    kept = [prop for prop in model.metadata_props if not prop.key.startswith(PREFIX)]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in values.items():
        text = value if isinstance(value, str) else json.dumps(value)
        model.metadata_props.add(key=PREFIX + key, value=text)


def metadata_of(model: onnx.ModelProto) -> dict[str, Any]:
    """The foadx props of a model, JSON values decoded; {} for a file foadx did not write.

    Raises:
        BadInputError: a foadx prop that should hold JSON does not parse (CLI exit code 3).
    """
    values: dict[str, Any] = {}
    for prop in model.metadata_props:
        if not prop.key.startswith(PREFIX):
            continue
        key = prop.key[len(PREFIX):]
        try:
            values[key] = json.loads(prop.value) if key in JSON_KEYS else prop.value
        except (ValueError, RecursionError) as error:
            raise BadInputError(f"the ONNX metadata {prop.key!r} is not valid JSON: {str(error)[:80]}") from error
    return values


def float_parameter_count(model: onnx.ModelProto) -> int:
    """Parameters of an ONNX file: its float initializers (BN is folded into the convolutions by
    the exporter, so this counts what the graph computes with)."""
    return sum(math.prod(tensor.dims) for tensor in model.graph.initializer
               if tensor.data_type == onnx.TensorProto.FLOAT)
