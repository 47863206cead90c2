"""int8 by explicit quantization: a Q/DQ ONNX made by onnxruntime's static quantization,
calibrated on real images. It runs on onnxruntime's CPU provider, so its agreement with the
fp32 file and its accuracy are measured here; TensorRT builds int8 engines from it.

Symmetric int8 for weights (per channel) and activations, as TensorRT requires of Q/DQ
networks; MinMax calibration over the given images.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from foadx.atomic import atomic_path
from foadx.errors import BadInputError
from foadx.export.metadata import load_onnx, metadata_of, write_metadata
from foadx.runtime import InputBatch, Tolerances, compare_sessions, open_session


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """onnxruntime.quantization advises pre-processing on the root logger; foadx reports instead."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_int8(fp32_path: str | Path, int8_path: str | Path, images: np.ndarray, batch_size: int = 16) -> dict[str, Any]:
    """Writes a Q/DQ copy of ``fp32_path`` calibrated on ``images`` (N, 3, H, W, preprocessed);
    returns how far its outputs are from the fp32 file's on those images."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    source = load_onnx(fp32_path)
    input_name = source.graph.input[0].name
    images = np.ascontiguousarray(images, dtype=np.float32)
    if images.ndim != 4 or len(images) == 0:
        raise BadInputError(f"int8 calibration needs preprocessed images (N, 3, H, W), got {images.shape}")

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([images[i:i + batch_size] for i in range(0, len(images), batch_size)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {input_name: batch}

    with atomic_path(int8_path) as temporary, _quiet_root_logger():
        quantize_static(
            str(fp32_path), str(temporary), Batches(), quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
        )
        quantized = onnx.load(str(temporary))
        write_metadata(quantized, {**metadata_of(source), "precision": "int8", "calibration_images": str(len(images))})
        onnx.save_model(quantized, str(temporary))
    sample = [InputBatch("images", images[: min(len(images), 32)])]
    case = compare_sessions(open_session("ort-cpu", int8_path), open_session("ort-cpu", fp32_path), sample,
                            Tolerances.report_only())[0]
    comparison = case.outputs[0]
    return {"path": str(int8_path), "calibration_images": int(len(images)),
            "qdq_nodes": sum(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in quantized.graph.node),
            "vs_fp32": {"max_abs": comparison.max_abs, "mean_abs": comparison.mean_abs, "cosine": comparison.cosine}}
