"""The ``trt`` backend: a serialized TensorRT engine run with torch CUDA tensors (no pycuda).

TensorRT 10 API: named I/O tensors, ``set_input_shape``, ``set_tensor_address``,
``execute_async_v3`` on a torch CUDA stream. Timing like trtexec's: host-to-device copy, GPU
compute and device-to-host copy are each bracketed by CUDA events; ``timed_step`` returns the
GPU compute time and keeps the copies' times in ``last_transfer_ms``. Optionally the enqueue is
captured once in a CUDA graph and replayed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from foadx.errors import BadInputError
from foadx.optional import import_tensorrt, require_cuda
from foadx.runtime.base import Session, SessionOptions, TimedStep


class TensorRTSession(Session):
    """A serialized TensorRT engine, run with torch CUDA buffers (inputs and outputs cross as
    float32 numpy arrays).

    Raises (on opening):
        BadInputError: the engine file is missing, TensorRT cannot deserialize it, or it has more
            than one input.
        MissingDependencyError: TensorRT or a CUDA GPU is absent.
    """

    backend = "trt"

    def __init__(self, engine_path: str | Path, options: SessionOptions, use_cuda_graph: bool = False) -> None:
        trt = import_tensorrt()
        self.torch = torch = require_cuda()
        path = Path(engine_path)
        if not path.is_file():
            raise BadInputError(f"engine not found: {path}")
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(self.logger).deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise BadInputError(f"{path} is not a TensorRT engine for this TensorRT version and GPU")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(index) for index in range(self.engine.num_io_tensors)]
        inputs = [name for name in names if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT]
        if len(inputs) != 1:
            raise BadInputError(f"{path} has {len(inputs)} inputs; foadx runs single-input image models")
        self.input_name = inputs[0]
        self.output_names = [name for name in names if name not in inputs]
        self.input_shape = tuple(None if dim < 0 else dim for dim in self.engine.get_tensor_shape(self.input_name))
        self.stream = torch.cuda.Stream()
        self.use_cuda_graph = use_cuda_graph
        self.last_transfer_ms: tuple[float, float] = (0.0, 0.0)
        self._buffers: dict[int, tuple] = {}
        self._active: int | None = None

    def _bind(self, batch_size: int):
        """Device buffers for one batch size, with the context's shape and addresses pointing at
        them (re-pointed whenever another batch size was bound since), and a graph if asked."""
        torch = self.torch
        shape = (batch_size, *self.input_shape[1:])
        if batch_size in self._buffers:
            device_input, outputs, graph = self._buffers[batch_size]
            if self._active != batch_size:
                self.context.set_input_shape(self.input_name, shape)
                for name, tensor in zip([self.input_name, *self.output_names], [device_input, *outputs]):
                    self.context.set_tensor_address(name, tensor.data_ptr())
                self._active = batch_size
            return self._buffers[batch_size]
        self.context.set_input_shape(self.input_name, shape)
        device_input = torch.empty(shape, dtype=torch.float32, device="cuda")
        self.context.set_tensor_address(self.input_name, device_input.data_ptr())
        outputs = []
        for name in self.output_names:
            output = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=torch.float32, device="cuda")
            self.context.set_tensor_address(name, output.data_ptr())
            outputs.append(output)
        self._active = batch_size
        graph = None
        if self.use_cuda_graph:
            self.context.execute_async_v3(self.stream.cuda_stream)  # warm-up before capture
            self.stream.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=self.stream):
                self.context.execute_async_v3(self.stream.cuda_stream)
        self._buffers[batch_size] = (device_input, outputs, graph)
        return self._buffers[batch_size]

    def _enqueue(self, graph) -> None:
        if graph is not None:
            graph.replay()
        else:
            self.context.execute_async_v3(self.stream.cuda_stream)

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        self.check_input(batch)
        device_input, outputs, graph = self._bind(batch.shape[0])
        with self.torch.cuda.stream(self.stream):
            device_input.copy_(self.torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)), non_blocking=False)
            self._enqueue(graph)
        self.stream.synchronize()
        return [output.cpu().numpy() for output in outputs]

    def timed_step(self, batch_size: int, seed: int = 0) -> TimedStep:
        torch = self.torch
        device_input, outputs, graph = self._bind(batch_size)
        host_input = torch.from_numpy(self.random_batch(batch_size, seed)).pin_memory()
        host_outputs = [torch.empty(output.shape, dtype=output.dtype).pin_memory() for output in outputs]
        events = [torch.cuda.Event(enable_timing=True) for _ in range(4)]

        def step() -> float:
            with torch.cuda.stream(self.stream):
                events[0].record(self.stream)
                device_input.copy_(host_input, non_blocking=True)
                events[1].record(self.stream)
                self._enqueue(graph)
                events[2].record(self.stream)
                for host, device in zip(host_outputs, outputs):
                    host.copy_(device, non_blocking=True)
                events[3].record(self.stream)
            events[3].synchronize()
            self.last_transfer_ms = (events[0].elapsed_time(events[1]), events[2].elapsed_time(events[3]))
            return events[1].elapsed_time(events[2]) / 1000.0

        return step

    def settings(self) -> dict[str, object]:
        trt = import_tensorrt()
        return {"tensorrt": trt.__version__, "device": self.torch.cuda.get_device_name(),
                "cuda_graph": self.use_cuda_graph, "timing": "GPU compute (CUDA events); H2D/D2H apart"}
