"""A TensorRT engine against onnxruntime on the same inputs, through the one comparator, with
its precision's floors (``Tolerances.for_precision``: every sample's cosine and the error
relative to the output's RMS; element tolerances do not apply across precisions); int8 is
reported only (its accuracy is what matters: ``foadx eval``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from foadx.errors import CheckFailedError
from foadx.runtime import SessionOptions, Tolerances, compare_sessions, comparison_inputs, open_session

def check_engine(engine: Path, onnx_path: Path, precision: str, images: np.ndarray | None, profile: Any) -> dict[str, Any]:
    reference = open_session("ort-cpu", onnx_path)
    engine_session = open_session("trt", engine, SessionOptions())
    batches = tuple(sorted({profile.min_batch, profile.opt_batch, profile.max_batch}))
    inputs = comparison_inputs(tuple(reference.input_shape[1:]), batches, images)
    tolerances = (Tolerances.for_precision(precision, atol=math.inf, rtol=math.inf) if precision != "int8"
                  else Tolerances.report_only())
    cases = compare_sessions(engine_session, reference, inputs, tolerances)
    cosine = min(output.min_sample_cosine for case in cases for output in case.outputs)
    failures = [reason for case in cases for output in case.outputs for reason in output.failures]
    result = {"precision": precision, "min_sample_cosine": cosine, "required_cosine": tolerances.min_cosine,
              "max_scaled_error": max(output.scaled_error for case in cases for output in case.outputs),
              "batches": [case.batch for case in cases], "failures": failures}
    if failures:
        raise CheckFailedError(f"{engine}: TensorRT {precision} vs onnxruntime: {failures[0]}")
    return result
