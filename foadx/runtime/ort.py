"""The ``ort-cpu`` backend: onnxruntime's CPU execution provider on an ONNX file."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from foadx.errors import BadInputError, first_line
from foadx.optional import import_onnxruntime
from foadx.runtime.base import Session, SessionOptions, TimedStep


class OrtCpuSession(Session):
    """An ONNX file in onnxruntime's CPU execution provider, all graph optimisations on;
    ``options.threads`` sets the intra-op threads (inter-op 1).

    Raises (on opening):
        BadInputError: onnxruntime cannot load the file, or it has more than one input.
        MissingDependencyError: onnxruntime is not installed.
    Raises (on running, and on making a timed step, which runs once):
        BadInputError: onnxruntime cannot run the graph on the batch (a node fails on it).

    onnxruntime logs only fatal errors: what fails reaches the user as the one-line error.
    """

    backend = "ort-cpu"

    def __init__(self, model_path: str | Path, options: SessionOptions) -> None:
        ort = import_onnxruntime()
        session_options = ort.SessionOptions()
        session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session_options.log_severity_level = 4  # fatal only: the errors below say the rest
        if options.threads is not None:
            session_options.intra_op_num_threads = options.threads
            session_options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(
                str(model_path), sess_options=session_options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime's own exception types
            raise BadInputError(f"onnxruntime cannot load {model_path}: {first_line(error)}") from error
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise BadInputError(f"{model_path} has {len(inputs)} inputs; foadx runs single-input image models")
        self.input_name = inputs[0].name
        self.input_shape = tuple(dim if isinstance(dim, int) else None for dim in inputs[0].shape)
        self.output_names = [output.name for output in self._session.get_outputs()]
        self._threads = options.threads
        self._path = model_path

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        self.check_input(batch)
        return [np.asarray(output, dtype=np.float32) for output in self._run_checked({self.input_name: batch})]

    def _run_checked(self, feed: dict[str, np.ndarray]) -> list:
        try:
            return self._session.run(None, feed)
        except Exception as error:  # onnxruntime's own exception types (Fail, InvalidArgument, RuntimeException)
            raise BadInputError(f"onnxruntime cannot run {self._path} on a batch of {len(next(iter(feed.values())))}: "
                                f"{first_line(error, 300)}") from None

    def timed_step(self, batch_size: int, seed: int = 0) -> TimedStep:
        feed = {self.input_name: self.random_batch(batch_size, seed)}
        self.check_input(feed[self.input_name])
        self._run_checked(feed)  # a graph that fails fails here, in one line, not inside a timing loop
        run = self._session.run

        def step() -> float:
            start = time.perf_counter()
            run(None, feed)
            return time.perf_counter() - start

        return step

    def settings(self) -> dict[str, object]:
        ort = import_onnxruntime()
        return {
            "backend": self.backend,
            "providers": self._session.get_providers(),
            "intra_op_threads": self._threads if self._threads is not None else "default",
            "onnxruntime": ort.__version__,
            "precision": "fp32",
        }
