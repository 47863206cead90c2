"""The torch backends: ``torch-cpu``, ``torch-cuda`` (eager), ``torch-cuda-graph`` (replay) and
``torch-compile`` (``torch.compile`` with inductor, on the GPU where torch sees one).

CPU iterations are timed with ``perf_counter``; CUDA iterations with CUDA events around the
work on the current stream, so the time is the GPU's, not the Python launch overhead's — except
in eager mode, where launch overhead is exactly what a CUDA graph removes and so belongs in the
comparison: eager timing synchronises and measures wall time around the whole call.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from foadx.device import resolve_device
from foadx.errors import BadInputError
from foadx.module_copy import copy_module
from foadx.outputs import flatten_outputs
from foadx.runtime.base import Session, SessionOptions, TimedStep

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy with every Conv->BN pair fused into one convolution (eval-mode statistics), via
    torch.fx; what ONNX exporters and TensorRT do anyway, and one kernel less per layer."""
    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(copy_module(model).eval(), inplace=True)
    except Exception as error:  # fx cannot trace data-dependent control flow
        raise BadInputError(f"cannot fold BatchNorm: torch.fx cannot trace this model ({error})") from error


class TorchSession(Session):
    """Eager execution on the CPU or a GPU."""

    # The autograd mode every call runs under; compiled modules keep to one (a switch recompiles).
    grad_mode = staticmethod(torch.inference_mode)

    def __init__(self, model: nn.Module, options: SessionOptions, input_shape: tuple[int, ...],
                 device: str) -> None:
        self.device = resolve_device(device)
        self.backend = "torch-cpu" if self.device.type == "cpu" else "torch-cuda"
        if options.threads is not None and self.device.type == "cpu":
            torch.set_num_threads(options.threads)
        self.options = options
        self.dtype = _DTYPES[options.precision]
        self.memory_format = torch.channels_last if options.channels_last else torch.contiguous_format
        network = fold_batchnorm(model) if options.fold_bn else copy_module(model).eval()
        self.model = network.to(self.device, dtype=self.dtype, memory_format=self.memory_format)
        self.input_name = "input"
        self.input_shape = (None, *input_shape[1:])
        try:
            with torch.inference_mode():
                outputs = self._forward(self._tensor(self.random_batch(2, 0)))
        except RuntimeError as error:  # the network cannot take this input size
            shape = "x".join(map(str, input_shape[1:]))
            raise BadInputError(f"the model cannot run on {shape} inputs: {str(error).splitlines()[0]}") from error
        self.output_names = [name for name, _ in outputs]

    def _tensor(self, batch: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        return tensor.to(self.device, dtype=self.dtype).contiguous(memory_format=self.memory_format)

    def _call(self, tensor: torch.Tensor) -> Any:
        """The model's own result on ``tensor`` (a tensor, or a tuple, list or dict of them)."""
        return self.model(tensor)

    def _forward(self, tensor: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
        """The model's outputs on ``tensor`` as (name, tensor), flattened by ``foadx.outputs``."""
        return flatten_outputs(self._call(tensor), reserved=(self.input_name,))

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        self.check_input(batch)
        try:
            with self.grad_mode():
                outputs = self._forward(self._tensor(batch))
        except RuntimeError as error:
            raise BadInputError(
                f"{self.backend}: the model cannot run on a {'x'.join(map(str, batch.shape))} batch: "
                f"{str(error).strip().splitlines()[0]}"
            ) from error
        return [output.float().cpu().numpy() for _, output in outputs]

    def timed_step(self, batch_size: int, seed: int = 0) -> TimedStep:
        forward = self._timed_call(batch_size)
        tensor = self._tensor(self.random_batch(batch_size, seed))
        synchronize, grad_mode = self._synchronize, self.grad_mode

        def step() -> float:
            with grad_mode():
                start = time.perf_counter()
                forward(tensor)
                synchronize()
                return time.perf_counter() - start

        return step

    def _timed_call(self, batch_size: int) -> Callable[[torch.Tensor], Any]:
        """What one timed step calls on a (batch_size, C, H, W) tensor: the module itself."""
        return self.model

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def settings(self) -> dict[str, object]:
        settings: dict[str, object] = {
            "precision": self.options.precision,
            "channels_last": self.options.channels_last,
            "fold_bn": self.options.fold_bn,
            "torch": torch.__version__,
        }
        if self.device.type == "cpu":
            settings["intra_op_threads"] = torch.get_num_threads()
        else:
            settings["device"] = torch.cuda.get_device_name(self.device)
            settings["cudnn"] = torch.backends.cudnn.version()
        return settings


class CudaGraphSession(TorchSession):
    """Captures one CUDA graph per batch size and replays it; timed with CUDA events."""

    def __init__(self, model: nn.Module, options: SessionOptions, input_shape: tuple[int, ...]) -> None:
        super().__init__(model, options, input_shape, "cuda")
        self.backend = "torch-cuda-graph"
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor, list[tuple[str, torch.Tensor]]]] = {}

    def _graph_for(self, batch_size: int, seed: int = 0):
        if batch_size not in self._graphs:
            static_input = self._tensor(self.random_batch(batch_size, seed))
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.inference_mode(), torch.cuda.stream(side):
                for _ in range(3):  # warm-up on a side stream, as CUDA graph capture requires
                    self._forward(static_input)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.inference_mode(), torch.cuda.graph(graph):
                static_outputs = self._forward(static_input)
            self._graphs[batch_size] = (graph, static_input, static_outputs)
        return self._graphs[batch_size]

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        self.check_input(batch)
        graph, static_input, static_outputs = self._graph_for(batch.shape[0])
        static_input.copy_(self._tensor(batch))
        graph.replay()
        return [output.float().cpu().numpy() for _, output in static_outputs]

    def timed_step(self, batch_size: int, seed: int = 0) -> TimedStep:
        graph = self._graph_for(batch_size, seed)[0]
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

        def step() -> float:
            start.record()
            graph.replay()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1000.0

        return step

    def settings(self) -> dict[str, object]:
        return {**super().settings(), "cuda_graph": True}


# Variants torch.compile may cache per forward code object: one per batch size, precision and
# model instance of one class (shapes are static). Past torch's default of 8 — two models at four
# batch sizes — it would run eager without a word; compilation here raises the limit and fails
# loudly instead of falling back.
RECOMPILE_LIMIT = 64
WARMUP_CALLS = 3  # inductor compiles on the first call; CUDA graph trees record on a later one


class CompiledSession(TorchSession):
    """``torch.compile`` with inductor, on the CUDA GPU when torch sees one, else on the CPU.

    Mode ``"reduce-overhead"`` on CUDA (inductor's kernels replayed from CUDA graphs), ``"default"``
    on the CPU. Shapes are static: each batch size is compiled once — batch 1 in ``__init__``,
    others on their first ``run`` or ``timed_step`` — and warmed up there, so no timed call
    compiles. ``compile_seconds`` maps a batch size (as a string, a JSON key) to the seconds its
    compilation and warm-up took (``settings()["compile_s"]``); compile time is never part of a latency.
    Calls run under ``torch.no_grad`` (inference mode would be another guard, so a recompile).

    Raises:
        BadInputError: fp16 without a CUDA GPU, or a model that cannot run on ``input_shape``.
    """

    grad_mode = staticmethod(torch.no_grad)

    def __init__(self, model: nn.Module, options: SessionOptions, input_shape: tuple[int, ...]) -> None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cpu" and options.precision != "fp32":
            raise BadInputError(f"torch-compile runs {options.precision} on a CUDA GPU only, and torch sees none: use fp32")
        super().__init__(model, options, input_shape, device)
        self.backend = "torch-compile"
        self.mode = "reduce-overhead" if self.device.type == "cuda" else "default"
        self.eager = self.model
        self.model = torch.compile(self.eager, mode=self.mode, dynamic=False)
        self.compile_seconds: dict[str, float] = {}
        self.prepare(1)

    def _call(self, tensor: torch.Tensor) -> Any:
        if self.device.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()  # earlier outputs may be overwritten now
        return super()._call(tensor)

    def prepare(self, batch_size: int) -> float:
        """Compiles and warms up ``batch_size`` once; returns the seconds that took."""
        key = str(batch_size)
        if key not in self.compile_seconds:
            tensor = self._tensor(self.random_batch(batch_size, 0))
            started = time.perf_counter()
            with torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT, fail_on_recompile_limit_hit=True):
                with self.grad_mode():
                    for _ in range(WARMUP_CALLS):
                        self._forward(tensor)
            self._synchronize()
            self.compile_seconds[key] = time.perf_counter() - started
        return self.compile_seconds[key]

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        self.check_input(batch)
        self.prepare(batch.shape[0])
        return super().run(batch)

    def _timed_call(self, batch_size: int) -> Callable[[torch.Tensor], Any]:
        self.prepare(batch_size)  # compiled and warmed up before the first timed call
        return self._call

    def settings(self) -> dict[str, object]:
        # compile_s is the live dict: batch sizes prepared after this call (a bench asks for the
        # settings before its timed steps) still show in the report.
        return {**super().settings(), "compile_mode": self.mode, "compile_s": self.compile_seconds}
