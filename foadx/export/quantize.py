"""int8 by static quantization (onnxruntime's ``quantize_static``), calibrated on real images,
checked on images the calibration never saw, and refused when it is not good enough.

The form depends on the runtime (measured on MobileFaceNet, 2-core AMD EPYC with AVX2 and no
VNNI; docs/deployment.md, "int8"; ``benchmarks/bench_targets.py``):

- TensorRT and OpenVINO take Q/DQ with symmetric int8 activations and weights (TensorRT requires
  it; OpenVINO ran it 1.37-1.48x faster than fp32, the fastest form there).
- onnxruntime's CPU provider ran that Q/DQ file 3.3x *slower* than fp32 (its int8 kernels want
  uint8 activations); Q/DQ with uint8 activations ran 0.81-0.91x. The operator form (QLinearConv)
  was 1.09-1.22x faster but broke the PReLU-rewritten graph (mean per-sample cosine 0.71). So
  ``ort-cpu`` and ``insightface`` get Q/DQ with uint8 activations: accurate, and honest that on
  such a CPU int8 does not beat fp32.
- ``mobile`` gets Q/DQ with uint8 activations, which onnxruntime's NNAPI and XNNPACK providers
  take (onnxruntime's mobile documentation; not measured here, no phone).

Weights use 7 of their 8 bits (``reduce_range``), as onnxruntime advises for x86 CPUs without
VNNI, whose u8 x s8 instructions saturate: it raised the worst held-out cosine in every form
measured here (e.g. OpenVINO's from 0.983 to 0.996).

The check: the first images calibrate, the rest are held out; on those the int8 file runs
against the fp32 file through the comparator, per sample. Below ``min_cosine`` (default 0.99)
the file is not written and ``Int8CheckFailedError`` (exit 4) says by how much. The usual
remedies are options: per-channel weights, the first and last layers left in fp32, more
calibration images, another calibration method.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from foadx.atomic import atomic_path
from foadx.errors import BadInputError, CheckFailedError
from foadx.export.metadata import load_onnx, metadata_of, write_metadata
from foadx.runtime import InputBatch, SessionOptions, Tolerances, compare_sessions, open_session
from foadx.runtime.parity import sample_cosines

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
DEFAULT_MIN_COSINE = 0.99
HELD_OUT_FRACTION = 0.25
MIN_HELD_OUT = 8
WEIGHTED_OPS = ("Conv", "Gemm", "MatMul")


@dataclass(frozen=True)
class Int8Form:
    """How the Q/DQ or QLinear file is laid out for a runtime."""

    quant_format: str  # "QDQ" or "QOperator"
    activations: str  # "int8" (symmetric) or "uint8" (asymmetric)
    checked_on: str  # the backend that runs the held-out check (TensorRT's stand-in: onnxruntime)


INT8_FORMS = {
    "tensorrt": Int8Form("QDQ", "int8", "ort-cpu"),
    "openvino": Int8Form("QDQ", "int8", "openvino"),
    "ort-cpu": Int8Form("QDQ", "uint8", "ort-cpu"),
    "insightface": Int8Form("QDQ", "uint8", "ort-cpu"),
    "mobile": Int8Form("QDQ", "uint8", "ort-cpu"),
}


@dataclass(frozen=True)
class Int8Options:
    method: str = "minmax"
    per_channel: bool = True
    fp32_layers: tuple[str, ...] = ()  # "first", "last" or node names kept in fp32
    min_cosine: float = DEFAULT_MIN_COSINE

    def __post_init__(self) -> None:
        if self.method not in CALIBRATION_METHODS:
            raise BadInputError(f"--calib-method must be one of {', '.join(CALIBRATION_METHODS)}, got {self.method!r}")
        if not -1.0 <= self.min_cosine <= 1.0:
            raise BadInputError(f"the int8 cosine floor must be in [-1, 1], got {self.min_cosine}")


class Int8CheckFailedError(CheckFailedError):
    """The int8 file answers too far from the fp32 one on held-out images; carries the report."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """onnxruntime.quantization logs advice on the root logger and prints calibration progress
    to stdout (which would corrupt ``--json``); foadx reports instead."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def split_images(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(calibration, held-out): the last quarter (at least 8) is held out for the check."""
    images = np.ascontiguousarray(images, dtype=np.float32)
    if images.ndim != 4 or len(images) < 2 * MIN_HELD_OUT:
        raise BadInputError(f"int8 needs at least {2 * MIN_HELD_OUT} preprocessed images (N, 3, H, W) to calibrate "
                            f"and check, got {images.shape}")
    held = max(MIN_HELD_OUT, int(len(images) * HELD_OUT_FRACTION))
    return images[:-held], images[-held:]


def fp32_node_names(model: onnx.ModelProto, layers: tuple[str, ...]) -> list[str]:
    """Node names for ``first``/``last`` (the first and last Conv, Gemm or MatMul) and names given."""
    weighted = [node.name for node in model.graph.node if node.op_type in WEIGHTED_OPS]
    names = {node.name for node in model.graph.node}
    chosen = []
    for layer in layers:
        if layer in ("first", "last"):
            if not weighted:
                raise BadInputError("the model has no Conv, Gemm or MatMul to keep in fp32")
            chosen.append(weighted[0] if layer == "first" else weighted[-1])
        elif layer in names:
            chosen.append(layer)
        else:
            raise BadInputError(f"--int8-fp32-layers: no node named {layer!r} (use first, last or a node name)")
    return chosen


def _quantize(source: Path, target: Path, calibration: np.ndarray, form: Int8Form, options: Int8Options,
              exclude: list[str], batch_size: int) -> None:
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    input_name = load_onnx(source).graph.input[0].name
    if options.method != "minmax":  # onnxruntime's histogram collectors cannot stack batches of unequal size
        batch_size = 1

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([calibration[i:i + batch_size] for i in range(0, len(calibration), batch_size)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {input_name: batch}

    symmetric = form.activations == "int8"
    with tempfile.TemporaryDirectory(prefix="foadx-int8-") as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared), str(target), Batches(), quant_format=getattr(QuantFormat, form.quant_format),
            activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8, weight_type=QuantType.QInt8,
            per_channel=options.per_channel, reduce_range=True, nodes_to_exclude=exclude,
            calibrate_method={"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                              "percentile": CalibrationMethod.Percentile}[options.method],
            extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True},
        )


def _check(int8_path: Path, fp32_path: Path, held_out: np.ndarray, task: str, options: Int8Options,
           backend: str) -> dict[str, Any]:
    tolerances = Tolerances.for_precision("int8", min_cosine=options.min_cosine)
    int8_session = open_session(backend, int8_path, SessionOptions(precision="int8" if backend == "openvino" else "fp32"))
    fp32_session = open_session("ort-cpu", fp32_path)
    case = compare_sessions(int8_session, fp32_session, [InputBatch("images", held_out)], tolerances, task)[0]
    cosines = sample_cosines(int8_session.run(held_out)[0], fp32_session.run(held_out)[0])
    output = case.outputs[0]
    return {"held_out_images": len(held_out), "min_sample_cosine": float(cosines.min()),
            "mean_sample_cosine": float(cosines.mean()), "cosine": output.cosine, "max_abs": output.max_abs,
            "task_agreement_pct": case.agreement_pct, "min_cosine": options.min_cosine, "passed": case.passed,
            "checked_on": backend}


def quantize_int8(fp32_path: str | Path, int8_path: str | Path, images: np.ndarray, *, target: str = "tensorrt",
                  options: Int8Options | None = None, batch_size: int = 16) -> dict[str, Any]:
    """Writes an int8 copy of ``fp32_path`` in ``target``'s form, calibrated on the first images
    (N, 3, H, W, preprocessed) and checked on the held-out rest; returns the report. Raises
    ``Int8CheckFailedError`` (and writes nothing) below the cosine floor."""
    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    options = options or Int8Options()
    if target not in INT8_FORMS:
        raise BadInputError(f"no int8 form for target {target!r}: use one of {', '.join(INT8_FORMS)}")
    form = INT8_FORMS[target]
    source = load_onnx(fp32_path)
    calibration, held_out = split_images(images)
    exclude = fp32_node_names(source, options.fp32_layers)
    task = metadata_of(source).get("task", "unknown")
    with atomic_path(int8_path) as temporary, _quiet():
        _quantize(fp32_path, temporary, calibration, form, options, exclude, batch_size)
        quantized = onnx.load(str(temporary))
        write_metadata(quantized, {**metadata_of(source), "precision": "int8", "int8_form": asdict(form),
                                   "calibration_images": str(len(calibration)), "calibration_method": options.method})
        onnx.save_model(quantized, str(temporary))
        check = _check(temporary, fp32_path, held_out, task, options, form.checked_on)
        report = {"path": str(int8_path), "target": target, "form": asdict(form), "calibration_images": len(calibration),
                  "method": options.method, "per_channel": options.per_channel, "fp32_layers": exclude,
                  "qdq_nodes": sum(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in quantized.graph.node),
                  "vs_fp32": check}
        if not check["passed"]:
            raise Int8CheckFailedError(
                f"int8 check failed on {len(held_out)} held-out images: min per-sample cosine "
                f"{check['min_sample_cosine']:.4f} < {options.min_cosine} (mean {check['mean_sample_cosine']:.4f}, "
                f"task agreement {check['task_agreement_pct']}%); {int8_path} not written. Try --int8-fp32-layers "
                "first,last, more --calib-images, --calib-method entropy or percentile", report)
    return report
