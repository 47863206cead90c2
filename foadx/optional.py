"""Optional dependencies and hardware, imported in one low place with errors that say what to install.

TensorRT, trtexec and CUDA are optional: foadx runs without them and refuses (exit 6) only the
work that needs them — before doing any other work, so a long export is never wasted.
"""

from __future__ import annotations

import shutil
from typing import Any

from foadx.errors import MissingDependencyError

TENSORRT_MISSING = (
    "TensorRT is not installed: pip install \"foadx[trt]\" on a CUDA machine (or use NVIDIA's TensorRT "
    "container); on Jetson it comes with JetPack"
)
TRTEXEC_MISSING = (
    "trtexec is not on PATH: it ships with TensorRT (NVIDIA's TensorRT containers, JetPack on Jetson, "
    "or the TensorRT tar/deb packages' bin/ folder)"
)


def import_tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError as error:
        raise MissingDependencyError(TENSORRT_MISSING) from error
    return tensorrt


def import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as error:
        raise MissingDependencyError("onnxruntime is not installed: pip install onnxruntime") from error
    return onnxruntime


def import_openvino() -> Any:
    try:
        import openvino
    except ImportError as error:
        raise MissingDependencyError('OpenVINO is not installed: pip install "foadx[openvino]"') from error
    return openvino


def require_cuda(what: str = "TensorRT") -> Any:
    """torch, once it is known to see a CUDA GPU."""
    import torch

    if not torch.cuda.is_available():
        raise MissingDependencyError(f"{what} needs a CUDA GPU, but torch sees none (no GPU, or a CPU-only torch build)")
    return torch


def require_tensorrt() -> None:
    """Everything a TensorRT engine build or run needs, checked up front."""
    import_tensorrt()
    require_cuda()


def trtexec_executable() -> str:
    executable = shutil.which("trtexec")
    if executable is None:
        raise MissingDependencyError(TRTEXEC_MISSING)
    return executable
