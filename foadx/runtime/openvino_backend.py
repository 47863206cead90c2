"""The ``openvino`` backend: OpenVINO's CPU plugin on an ONNX file.

OpenVINO picks its own inference precision: on CPUs with bf16 units it runs fp32 models in bf16
unless told otherwise, which moves a face embedding's cosine from 0.99999988 to about 0.9988.
So the precision is always set explicitly (``INFERENCE_PRECISION_HINT``), read back from the
compiled model, and recorded in every report; bf16 on a CPU without it is refused rather than
silently run in fp32. ``int8`` runs a Q/DQ file (``foadx export --precision int8``) through
OpenVINO's low-precision transformations.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from foadx.errors import BadInputError, MissingDependencyError
from foadx.optional import import_openvino
from foadx.runtime.base import Session, SessionOptions, TimedStep

HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
FOADX_NAMES = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}
class OpenVinoSession(Session):
    """An ONNX file compiled for OpenVINO's CPU plugin with a latency hint; ``options.precision``
    becomes its inference precision hint, and the precision it actually runs is read back
    (``settings()``).

    Raises (on opening):
        BadInputError: OpenVINO cannot load the file, int8 asked of a file without Q/DQ nodes,
            or more than one input.
        MissingDependencyError: OpenVINO is not installed, or bf16 was asked of a CPU without it.
    """

    backend = "openvino"

    def __init__(self, model_path: str | Path, options: SessionOptions) -> None:
        ov = import_openvino()
        core = ov.Core()
        capabilities = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        if options.precision == "bf16" and "BF16" not in capabilities:
            raise MissingDependencyError(
                f"this CPU has no bf16 support (OpenVINO CPU capabilities: {', '.join(capabilities)}); "
                "OpenVINO would run fp32 instead: use --precision fp32")
        config = {"INFERENCE_PRECISION_HINT": HINTS[options.precision], "PERFORMANCE_HINT": "LATENCY"}
        if options.threads is not None:
            config["INFERENCE_NUM_THREADS"] = options.threads
        try:
            model = core.read_model(str(model_path))
            self._compiled = core.compile_model(model, "CPU", config)
        except RuntimeError as error:
            raise BadInputError(f"OpenVINO cannot load {model_path}: {_reason(error)}") from error
        quantized = any(op.get_type_name() == "FakeQuantize" for op in model.get_ops())
        if options.precision == "int8" and not quantized:
            raise BadInputError(f"{model_path} holds no Q/DQ nodes: make an int8 file with foadx export --precision int8")
        inputs = self._compiled.inputs
        if len(inputs) != 1:
            raise BadInputError(f"{model_path} has {len(inputs)} inputs; foadx runs single-input image models")
        self.input_name = inputs[0].get_any_name()
        shape = inputs[0].get_partial_shape()
        self.input_shape = tuple(dim.get_length() if dim.is_static else None for dim in shape)
        self.output_names = [output.get_any_name() for output in self._compiled.outputs]
        self._request = self._compiled.create_infer_request()
        self._precision = options.precision
        self._version = ov.__version__

    @property
    def inference_precision(self) -> str:
        """What the compiled model actually computes in (read back, not what was asked); a Q/DQ
        file runs its quantized layers in int8 whatever the float hint."""
        if self._precision == "int8":
            return "int8"
        name = self._compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        return FOADX_NAMES.get(name, name)

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        self.check_input(batch)
        results = self._request.infer({0: batch})
        return [np.array(results[output], dtype=np.float32) for output in self._compiled.outputs]

    def timed_step(self, batch_size: int, seed: int = 0) -> TimedStep:
        batch = self.random_batch(batch_size, seed)
        self.check_input(batch)
        request = self._request

        def step() -> float:
            start = time.perf_counter()
            request.infer({0: batch})
            return time.perf_counter() - start

        return step

    def settings(self) -> dict[str, object]:
        return {
            "backend": self.backend,
            "openvino": self._version,
            "device": "CPU",
            "precision": self._precision,
            "inference_precision": self.inference_precision,
            "threads": self._compiled.get_property("INFERENCE_NUM_THREADS"),
        }


_FRAMING = ("Exception from", "Check '", "FrontEnd API failed", "Model wasn't fully converted", "-- ", "While validating",
            "Summary:")


def _reason(error: Exception) -> str:
    """The line of an OpenVINO error that says what is wrong: its messages open with source
    locations and the layers of checks that led there (``_FRAMING``); the first line otherwise."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    reason = next((line for line in lines if not line.startswith(_FRAMING)), lines[0] if lines else type(error).__name__)
    return reason[:300]
