"""A TensorRT engine against onnxruntime on the same inputs, through the one comparator, with
precision-aware cosine floors: fp32 must agree like an fp32 file (cosine >= 0.99999), fp16
cosine >= 0.999 on embeddings/logits; int8 is reported only (its accuracy is what matters:
``foadx eval``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from foadx.errors import CheckFailedError
from foadx.runtime import SessionOptions, Tolerances, compare_sessions, comparison_inputs, open_session

MIN_COSINE = {"fp32": 0.99999, "fp16": 0.999}


def check_engine(engine: Path, onnx_path: Path, precision: str, images: np.ndarray | None, profile: Any) -> dict[str, Any]:
    reference = open_session("ort-cpu", onnx_path)
    engine_session = open_session("trt", engine, SessionOptions())
    batches = tuple(sorted({profile.min_batch, profile.opt_batch, profile.max_batch}))
    inputs = comparison_inputs(tuple(reference.input_shape[1:]), batches, None)
    if images is not None:
        inputs += comparison_inputs(tuple(reference.input_shape[1:]), (profile.max_batch,), images)[1:]
    required = MIN_COSINE.get(precision)
    cases = compare_sessions(engine_session, reference, inputs, Tolerances(math.inf, math.inf, required))
    cosine = min(output.cosine for case in cases for output in case.outputs)
    result = {"precision": precision, "min_cosine": cosine, "required": required,
              "batches": [case.batch for case in cases]}
    if not all(case.passed for case in cases):
        raise CheckFailedError(f"{engine}: TensorRT {precision} vs onnxruntime cosine {cosine:.6f} < {required}")
    return result
