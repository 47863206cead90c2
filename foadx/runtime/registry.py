"""The backend registry: one ``Backend`` entry per backend carries everything foadx knows about
it (what it loads, how a session opens, the ONNX form a file run there takes, what it requires,
whether it can be latency-profiled and at which width step, its precisions, its help line).
Adding an entry is the only edit a new backend needs for bench, profile and export lookups.

The runtime layer knows nothing about export or pruning: targets are names
(``foadx.export.targets.TARGETS``), width steps are integers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from foadx.errors import BadInputError
from foadx.optional import import_openvino, import_tensorrt, require_cuda, trtexec_executable
from foadx.runtime.base import Session, SessionOptions

# The legal width step of latency pruning: kept channel counts are multiples of it.
# CPU, 16: onnxruntime's NCHWc kernels want multiples of 8 (16 with AVX-512); MobileFaceNet pruned
# to 64% fewer MACs ran 2.03x faster at batch 1 with widths rounded to 16, 1.81x with 8 and 0.92x
# unrounded (docs/results.md, "Export choices and latency on onnxruntime CPU"; docs/latency.md section 1).
# CUDA, 8: fp16 tensor cores; rounding to multiples of 8 took MobileFaceNet at fp16, batch 256, on
# an H100 from 1.52x to 1.73x (docs/gpu.md).
CPU_WIDTH_STEP = 16
CUDA_WIDTH_STEP = 8


@dataclass(frozen=True)
class Backend:
    """One backend.

    Attributes:
        name: the name users give (``--backend``).
        loads: ``"onnx"`` or ``"engine"`` (a file path) or ``"torch"`` (an ``nn.Module``).
        description: one line of help text, shown by ``backend_help``.
        opener: ``(model, SessionOptions, input_shape) -> Session``.
        export_target: the ``foadx.export.targets`` form of an ONNX file run here (for ``engine``
            backends: the form the engine is built from); None for torch backends.
        requires: keys of ``REQUIREMENTS``, checked in this order: ``gpu`` (torch sees CUDA),
            ``tensorrt`` (the Python package), ``openvino``, ``trtexec`` (on PATH).
        external: timed by an outside tool (trtexec), not through a Session.
        profiling: a latency table can be measured here (``foadx profile``, latency pruning).
        width_step: the legal width step of latency pruning on this backend, channels.
        precisions: the numeric precisions ``open_session`` accepts.
    """

    name: str
    loads: str
    description: str
    opener: Callable[..., Session]
    export_target: str | None = None
    requires: tuple[str, ...] = ()
    external: bool = False
    profiling: bool = False
    width_step: int = CPU_WIDTH_STEP
    precisions: tuple[str, ...] = ("fp32",)

    @property
    def needs_gpu(self) -> bool:
        return "gpu" in self.requires


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


def _compiled(model: Any, options: SessionOptions, input_shape: tuple[int, ...]) -> Session:
    from foadx.runtime.torch_backends import CompiledSession

    return CompiledSession(model, options, input_shape)


GPU_PRECISIONS = ("fp32", "fp16")
TENSORRT_PRECISIONS = ("fp32", "fp16", "int8")

BACKENDS: dict[str, Backend] = {
    backend.name: backend
    for backend in (
        Backend("ort-cpu", "onnx", "onnxruntime's CPU execution provider", _ort, "ort-cpu", profiling=True),
        Backend("openvino", "onnx", 'OpenVINO\'s CPU plugin (pip install "foadx[openvino]")', _openvino, "openvino",
                requires=("openvino",), profiling=True, precisions=("fp32", "bf16", "int8")),
        Backend("torch-cpu", "torch", "PyTorch eager on the CPU", _torch("cpu"), profiling=True),
        Backend("torch-cuda", "torch", "PyTorch eager on a CUDA GPU", _torch("cuda"), requires=("gpu",),
                profiling=True, width_step=CUDA_WIDTH_STEP, precisions=GPU_PRECISIONS),
        Backend("torch-cuda-graph", "torch", "PyTorch on a CUDA GPU, replayed from a CUDA graph", _cuda_graph,
                requires=("gpu",), width_step=CUDA_WIDTH_STEP, precisions=GPU_PRECISIONS),
        # Runs where it is (CUDA if torch sees a GPU, else the CPU, fp32 only there): what a GPU
        # user picks when TensorRT is missing; its width step is the GPU's.
        Backend("torch-compile", "torch", "torch.compile (inductor) on the CUDA GPU if torch sees one, else "
                "on the CPU, replayed from CUDA graphs on the GPU (the pick without TensorRT)", _compiled,
                width_step=CUDA_WIDTH_STEP, precisions=GPU_PRECISIONS),
        Backend("trt", "engine", "a TensorRT engine, run with torch CUDA buffers", _trt, "tensorrt",
                requires=("tensorrt", "gpu"), width_step=CUDA_WIDTH_STEP, precisions=TENSORRT_PRECISIONS),
        Backend("trtexec", "onnx", "TensorRT's trtexec, run as a process (it times itself)", _external, "tensorrt",
                requires=("trtexec",), external=True, width_step=CUDA_WIDTH_STEP, precisions=TENSORRT_PRECISIONS),
    )
}


def get_backend(name: str) -> Backend:
    """The registry entry of ``name``.

    Raises:
        BadInputError: ``name`` is not a registered backend (the message lists those that are).
    """
    if name not in BACKENDS:
        raise BadInputError(f"unknown backend {name!r}: use one of {', '.join(BACKENDS)}")
    return BACKENDS[name]


def backend_names(*, profiling: bool = False) -> tuple[str, ...]:
    """Registered backend names in registry order; ``profiling``: only those a latency table can
    be measured on."""
    return tuple(name for name, entry in BACKENDS.items() if entry.profiling or not profiling)


def backend_help(*, profiling: bool = False) -> str:
    """The help text of a ``--backend`` option: ``"name: description; ..."`` for every backend
    of ``backend_names(profiling=profiling)``, ending with a full stop."""
    return "; ".join(f"{name}: {BACKENDS[name].description}" for name in backend_names(profiling=profiling)) + "."


def width_step(name: str) -> int:
    """The legal width step (channels) of latency pruning on backend ``name``: 16 on CPU
    backends, 8 on CUDA ones (sources beside ``CPU_WIDTH_STEP``).

    Raises:
        BadInputError: ``name`` is not a registered backend.
    """
    return get_backend(name).width_step


# Each requirement a backend may name, and its check (``foadx.optional``: MissingDependencyError).
REQUIREMENTS: dict[str, Callable[[str], object]] = {
    "gpu": lambda backend: require_cuda(f"backend {backend}"),
    "tensorrt": lambda backend: import_tensorrt(),
    "openvino": lambda backend: import_openvino(),
    "trtexec": lambda backend: trtexec_executable(),
}


def check_available(names: Iterable[str]) -> list[Backend]:
    """Checks, before any model is loaded, exported or built, that every backend of ``names``
    exists and that what it requires (a GPU, TensorRT, OpenVINO, trtexec) is here.

    Returns:
        The registry entries, in the order given.

    Raises:
        BadInputError: no name was given, or a name is not a registered backend (exit 3).
        MissingDependencyError: a requirement is absent; the message says what to install (exit 6).
    """
    entries = [get_backend(name) for name in names]
    if not entries:
        raise BadInputError("give at least one backend")
    for entry in entries:
        for need in entry.requires:
            REQUIREMENTS[need](entry.name)
    return entries


def check_profiling_backend(name: str) -> Backend:
    """Checks, before any work, that a latency table can be measured on backend ``name`` here.

    Returns:
        The registry entry.

    Raises:
        BadInputError: ``name`` is not a backend that latency profiling runs on (exit 3).
        MissingDependencyError: the backend's GPU or package is absent (exit 6).
    """
    if name not in backend_names(profiling=True):
        raise BadInputError(f"latency profiling runs on {', '.join(backend_names(profiling=True))}, not {name}")
    return check_available([name])[0]


def open_session(
    backend: str,
    model: Any,
    options: SessionOptions | None = None,
    input_shape: tuple[int, ...] | None = None,
) -> Session:
    """Loads ``model`` on ``backend``.

    Args:
        backend: a registered backend name.
        model: an ONNX or engine path for file backends, an ``nn.Module`` for torch ones.
        options: precision, threads, memory format (default ``SessionOptions()``).
        input_shape: (N, C, H, W), N may be None: the image size module backends run at; files
            carry their own.

    Returns:
        An open Session.

    Raises:
        BadInputError: unknown backend, a precision the backend does not run, the wrong kind of
            model for the backend, or a module without ``input_shape``.
        MissingDependencyError: a GPU backend without a CUDA GPU (or a missing package, from the
            opener).
    """
    entry = get_backend(backend)
    options = options or SessionOptions()
    if options.precision not in entry.precisions:
        raise BadInputError(f"backend {backend} runs {', '.join(entry.precisions)}, not {options.precision}")
    if entry.needs_gpu:
        REQUIREMENTS["gpu"](backend)
    if entry.loads in ("onnx", "engine") and not isinstance(model, (str, Path)):
        raise BadInputError(f"backend {backend} runs {entry.loads} files; export the model first")
    if entry.loads == "torch" and isinstance(model, (str, Path)):
        raise BadInputError(f"backend {backend} runs PyTorch models, not the file {model}")
    if entry.loads == "torch" and input_shape is None:
        raise BadInputError(f"backend {backend} needs the input shape")
    return entry.opener(model, options, input_shape)
