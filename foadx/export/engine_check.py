"""A TensorRT engine against onnxruntime on the same inputs, with precision-aware verdicts:
fp32 must meet the ONNX parity tolerances' spirit (cosine >= 0.99999), fp16 cosine >= 0.999 on
embeddings/logits, int8 is reported only (its accuracy is what matters: ``foadx eval``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from foadx.errors import CheckFailedError
from foadx.runtime import SessionOptions, compare_output, open_session

MIN_COSINE = {"fp32": 0.99999, "fp16": 0.999}


def check_engine(engine: Path, onnx_path: Path, precision: str, images: np.ndarray | None, profile: Any) -> dict[str, Any]:
    reference = open_session("ort-cpu", onnx_path)
    engine_session = open_session("trt", engine, SessionOptions())
    rng = np.random.default_rng(0)
    batches = sorted({profile.min_batch, profile.opt_batch, profile.max_batch})
    inputs = [rng.standard_normal((batch, *reference.input_shape[1:]), dtype=np.float32) for batch in batches]
    if images is not None:
        inputs.append(np.asarray(images[: profile.max_batch], dtype=np.float32))
    cosines = []
    for batch in inputs:
        comparison = compare_output("output", engine_session.run(batch)[0], reference.run(batch)[0], 0.0, 0.0)
        cosines.append(comparison.cosine)
    result = {"precision": precision, "min_cosine": min(cosines), "required": MIN_COSINE.get(precision),
              "batches": [len(batch) for batch in inputs]}
    required = MIN_COSINE.get(precision)
    if required is not None and result["min_cosine"] < required:
        raise CheckFailedError(f"{engine}: TensorRT {precision} vs onnxruntime cosine {result['min_cosine']:.6f} < {required}")
    return result
