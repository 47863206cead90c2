"""The chain from a PyTorch module to what a backend loads, composed from the options given
(in the manner of Polygraphy's ``EngineFromNetwork(NetworkFromOnnxPath(...))``): each loader is
a callable that produces its file once, from the loader before it.

    engine = EngineFromOnnx(OnnxFromModule(module, scratch, ExportOptions()), scratch, EngineOptions("fp32"))
    engine()  # exports, builds, returns the engine path; a second call returns the same path
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from torch import nn

from foadx.export.onnx_export import export_onnx
from foadx.runtime.engine_options import EngineOptions

PathLoader = Callable[[], Path]
_names = itertools.count()


@dataclass(frozen=True)
class ExportOptions:
    """How a module becomes ONNX for a backend (``foadx export``'s choices, without checks:
    verification is the comparator's job)."""

    opset: int = 18
    batch: int | str | None = None  # None: the target's (foadx.export.targets)
    input_size: tuple[int, int] | None = None  # None: the model's own
    prelu_rewrite: bool | None = None  # None: the target's
    prelu_form: str = "auto"
    target: str = "ort-cpu"


class OnnxFromModule:
    def __init__(self, module: nn.Module, scratch: Path, options: ExportOptions | None = None) -> None:
        self.module, self.scratch, self.options = module, scratch, options or ExportOptions()
        self.path: Path | None = None

    def __call__(self) -> Path:
        if self.path is None:
            target = self.scratch / f"model-{next(_names)}.onnx"
            self.path = export_onnx(self.module, target, verify=False, **asdict(self.options)).path
        return self.path


class EngineFromOnnx:
    def __init__(self, onnx: PathLoader, scratch: Path, options: EngineOptions) -> None:
        self.onnx, self.scratch, self.options = onnx, scratch, options
        self.path: Path | None = None

    def __call__(self) -> Path:
        if self.path is None:
            from foadx.export.tensorrt import build_engine

            target = self.scratch / f"engine-{next(_names)}.engine"
            build_engine(self.onnx(), target, self.options)
            self.path = target
        return self.path


def existing(path: Path) -> PathLoader:
    """A file the user gave: the chain starts from it."""
    return lambda: path
