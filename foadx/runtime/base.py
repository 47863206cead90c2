"""The runtime interface every backend implements: load, run a batch, time one iteration.

Parity (``foadx.export.verify``) and latency (``foadx.benchmark``) only speak this interface, so
a new backend (TensorRT, trtexec) plugs in by registering itself in ``foadx.runtime.registry``.
Inputs and outputs cross the interface as float32 numpy arrays; what a backend keeps resident
(device buffers, CUDA graphs, ORT values) is its own business.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from foadx.errors import BadInputError

# fp16 for GPU backends; bf16 where OpenVINO's CPU plugin has it; int8 is a property of the file
# (a Q/DQ ONNX from ``foadx export --precision int8``), so only backends that run one accept it.
PRECISIONS = ("fp32", "fp16", "bf16", "int8")


@dataclass(frozen=True)
class SessionOptions:
    """How a model is loaded: numeric precision, CPU threads (None: the runtime's default),
    channels-last memory format and BatchNorm folded into the convolutions (torch backends)."""

    precision: str = "fp32"
    threads: int | None = None
    channels_last: bool = False
    fold_bn: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise BadInputError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.threads is not None and not 1 <= self.threads <= max_threads():
            raise BadInputError(f"threads must be in 1..{max_threads()} (4 per CPU core), got {self.threads}",
                                parameters=("threads",))


def max_threads() -> int:
    """The most CPU threads a session may ask for: 4 per core (more only adds contention, and a
    runtime asked for 100,000 threads spends minutes creating them)."""
    return 4 * (os.cpu_count() or 1)


# One timed iteration: runs the model once on a resident input, returns seconds.
TimedStep = Callable[[], float]


class Session(ABC):
    """A model loaded on one backend."""

    backend: str
    input_name: str
    input_shape: tuple[int | None, ...]  # None where the dimension is dynamic
    output_names: list[str]

    @abstractmethod
    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """Outputs for one float32 NCHW batch, as float32 numpy arrays."""

    def run_any_batch(self, images: np.ndarray) -> list[np.ndarray]:
        """``run`` on any number of (N, C, H, W) images: a model whose input fixes the batch B
        runs them B at a time, the last chunk padded with zeros that are cut from the outputs."""
        fixed = self.input_shape[0] if self.input_shape else None
        if fixed is None or len(images) == fixed:
            return self.run(images)
        chunks = []
        for start in range(0, len(images), fixed):
            chunk = images[start:start + fixed]
            padding = np.zeros((fixed - len(chunk), *chunk.shape[1:]), dtype=chunk.dtype)
            chunks.append([output[:len(chunk)] for output in self.run(np.concatenate([chunk, padding]))])
        return [np.concatenate(parts) for parts in zip(*chunks)]

    @abstractmethod
    def timed_step(self, batch_size: int, seed: int = 0) -> TimedStep:
        """A function timing one inference on a random batch kept resident on the backend."""

    def settings(self) -> dict[str, object]:
        """Backend settings worth recording in a report (threads, providers, precision...)."""
        return {}

    def check_input(self, batch: np.ndarray) -> None:
        """Refuses a batch whose shape the loaded model cannot take, naming both shapes."""
        expected = self.input_shape
        if batch.ndim != len(expected) or any(
            want is not None and want != got for want, got in zip(expected, batch.shape)
        ):
            shown = "x".join("N" if dim is None else str(dim) for dim in expected)
            raise BadInputError(
                f"{self.backend}: input {self.input_name!r} takes {shown}, got {'x'.join(map(str, batch.shape))}"
            )

    def random_batch(self, batch_size: int, seed: int) -> np.ndarray:
        """Standard-normal float32 inputs of shape (batch_size, *input_shape[1:]) (a dynamic
        dimension taken as 1), drawn from ``seed``."""
        shape = [batch_size, *[dim if dim is not None else 1 for dim in self.input_shape[1:]]]
        return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
