"""Backend names -> how to open a session, and what each one loads (an ONNX file or a module)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from foadx.errors import BadInputError, MissingDependencyError
from foadx.runtime.base import Session, SessionOptions


@dataclass(frozen=True)
class Backend:
    name: str
    loads: str  # "onnx" or "engine": a file path; "torch": an nn.Module
    description: str
    opener: Callable[..., Session]
    needs_gpu: bool = False
    external: bool = False  # timed by an outside tool (trtexec), not through a Session
    precisions: tuple[str, ...] = ("fp32",)


def _ort(model: Any, options: SessionOptions, input_shape: tuple[int, ...] | None) -> Session:
    from foadx.runtime.ort import OrtCpuSession

    return OrtCpuSession(model, options)


def _openvino(model: Any, options: SessionOptions, input_shape: tuple[int, ...] | None) -> Session:
    from foadx.runtime.openvino_backend import OpenVinoSession

    return OpenVinoSession(model, options)


def _torch(device: str) -> Callable[..., Session]:
    def opener(model: Any, options: SessionOptions, input_shape: tuple[int, ...]) -> Session:
        from foadx.runtime.torch_backends import TorchSession

        return TorchSession(model, options, input_shape, device)

    return opener


def _external(model: Any, options: SessionOptions, input_shape: tuple[int, ...] | None) -> Session:
    raise BadInputError("trtexec runs as its own process: use it through foadx bench --backend trtexec")


def _trt(model: Any, options: SessionOptions, input_shape: tuple[int, ...] | None) -> Session:
    from foadx.runtime.tensorrt_backend import TensorRTSession

    return TensorRTSession(model, options)


def _cuda_graph(model: Any, options: SessionOptions, input_shape: tuple[int, ...]) -> Session:
    from foadx.runtime.torch_backends import CudaGraphSession

    return CudaGraphSession(model, options, input_shape)


BACKENDS: dict[str, Backend] = {
    backend.name: backend
    for backend in (
        Backend("ort-cpu", "onnx", "onnxruntime, CPU execution provider", _ort),
        Backend("openvino", "onnx", "OpenVINO's CPU plugin (pip install foadx[openvino])", _openvino,
                precisions=("fp32", "bf16", "int8")),
        Backend("torch-cpu", "torch", "PyTorch eager on the CPU", _torch("cpu")),
        Backend("torch-cuda", "torch", "PyTorch eager on a CUDA GPU", _torch("cuda"), needs_gpu=True,
                precisions=("fp32", "fp16")),
        Backend("torch-cuda-graph", "torch", "PyTorch on a CUDA GPU, replayed from a CUDA graph", _cuda_graph,
                needs_gpu=True, precisions=("fp32", "fp16")),
        Backend("trt", "engine", "a TensorRT engine, run with torch CUDA buffers", _trt, needs_gpu=True,
                precisions=("fp32", "fp16", "int8")),
        Backend("trtexec", "onnx", "TensorRT's trtexec, run as a process (it times itself)", _external, external=True,
                precisions=("fp32", "fp16", "int8")),
    )
}


def require_gpu(backend: str) -> None:
    import torch

    if not torch.cuda.is_available():
        raise MissingDependencyError(
            f"backend {backend} needs a CUDA GPU, but torch sees none (no GPU, or a CPU-only torch build)"
        )


def get_backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise BadInputError(f"unknown backend {name!r}: use one of {', '.join(BACKENDS)}")
    return BACKENDS[name]


def open_session(
    backend: str,
    model: Any,
    options: SessionOptions | None = None,
    input_shape: tuple[int, ...] | None = None,
) -> Session:
    """Loads ``model`` (an ONNX path for onnx backends, an nn.Module for torch ones) on ``backend``.

    ``input_shape`` (N, C, H, W) tells module backends the image size; ONNX files carry their own.
    """
    entry = get_backend(backend)
    options = options or SessionOptions()
    if options.precision not in entry.precisions:
        raise BadInputError(f"backend {backend} runs {', '.join(entry.precisions)}, not {options.precision}")
    if entry.needs_gpu:
        require_gpu(backend)
    if entry.loads in ("onnx", "engine") and not isinstance(model, (str, Path)):
        raise BadInputError(f"backend {backend} runs {entry.loads} files; export the model first")
    if entry.loads == "torch" and isinstance(model, (str, Path)):
        raise BadInputError(f"backend {backend} runs PyTorch models, not the file {model}")
    if entry.loads == "torch" and input_shape is None:
        raise BadInputError(f"backend {backend} needs the input shape")
    return entry.opener(model, options, input_shape)
