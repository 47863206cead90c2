"""What ``foadx bench`` measures: each resolved MODEL, sized, and ready for a backend.

Module backends get the module; ONNX backends get the file, exported through the loader chain
when the user gave a module; the ``trt`` backend gets an engine built from that ONNX with the
benchmark's own precision (never a default hidden here).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from foadx.errors import BadInputError
from foadx.export.metadata import float_parameter_count
from foadx.export.loaders import EngineFromOnnx, ExportOptions, OnnxFromModule, PathLoader, existing
from foadx.pruning.cost import count_cost
from foadx.resolve import ModelRef, as_ref
from foadx.runtime.engine_options import EngineOptions
from foadx.runtime.registry import get_backend


@dataclass
class BenchModel:
    """A model to benchmark: its label, resolved reference, input C x H x W and sizes for the
    report (params, MACs, bytes of weights / ONNX / engine), with the files made for it cached."""

    label: str
    ref: ModelRef
    input_chw: tuple[int, int, int]
    sizes: dict[str, Any] = field(default_factory=dict)
    _onnx: dict[str, PathLoader] = field(default_factory=dict, repr=False)  # per export target
    _engine: PathLoader | None = field(default=None, repr=False)

    def for_backend(self, backend: str, scratch: Path, export_options: ExportOptions,
                    engine_options: EngineOptions | None) -> nn.Module | Path:
        """The module, ONNX path or engine path ``backend`` loads, made once through the chain;
        a module is exported in the form of that backend's ``Backend.export_target`` (an engine
        is built from that form).

        Raises:
            BadInputError: an ONNX file or engine for a torch backend, an engine for an ONNX one.
        """
        entry = get_backend(backend)
        if entry.loads == "torch":
            if not self.ref.runs_in_torch:
                raise BadInputError(f"{self.label} is a{'n ONNX file' if self.ref.kind == 'onnx' else ' TensorRT engine'}: "
                                    "torch backends need a model or artifact")
            return self.ref.module()
        onnx_options = replace(export_options, target=entry.export_target)
        if entry.loads == "engine":
            if self._engine is None:
                self._engine = (existing(self.ref.path) if self.ref.kind == "engine"
                                else EngineFromOnnx(self._onnx_loader(scratch, onnx_options),
                                                    scratch, engine_options))
            path = self._engine()
            self.sizes["bytes"]["engine"] = path.stat().st_size
            return path
        if self.ref.kind == "engine":
            raise BadInputError(f"{self.label} is a TensorRT engine: only the trt backend runs it")
        path = self._onnx_loader(scratch, onnx_options)()
        self.sizes["bytes"]["onnx"] = path.stat().st_size
        return path

    def _onnx_loader(self, scratch: Path, export_options: ExportOptions) -> PathLoader:
        if export_options.target not in self._onnx:
            self._onnx[export_options.target] = (
                existing(self.ref.path) if self.ref.kind == "onnx"
                else OnnxFromModule(self.ref.module(), scratch, replace(export_options, input_size=self.input_chw[1:])))
        return self._onnx[export_options.target]


def _module_sizes(module: nn.Module, input_chw: tuple[int, int, int]) -> dict[str, Any]:
    cost = count_cost(module, torch.zeros(1, *input_chw))
    state_bytes = sum(tensor.numel() * tensor.element_size() for tensor in module.state_dict().values())
    return {"params": cost.params, "macs": cost.macs, "bytes": {"weights": state_bytes, "onnx": None}}


def bench_model(label: str, model: ModelRef | nn.Module | str | Path,
                input_size: tuple[int, int] | None = None) -> BenchModel:
    """Wraps a model (a resolved ref, a foadx-built module, or a MODEL text) with params, MACs
    and bytes for the report. ``input_size`` (H, W) in pixels runs a module at another size (a
    file keeps the size it was exported or built for).

    Returns:
        A ``BenchModel`` with its (C, H, W) input and sizes: params, MACs (per image, None for
        files), bytes of the weights/ONNX file/engine, plan digest and input shape.

    Raises:
        BadInputError: a module without foadx provenance, ``input_size`` given for an ONNX file
            or engine, or a module that cannot run at that size (CLI exit code 3); resolving a
            MODEL text raises what ``resolve_model`` raises.
    """
    ref = as_ref(model, label)
    chw = ref.input_chw
    if input_size is not None and tuple(input_size) != chw[1:]:
        if not ref.runs_in_torch:
            raise BadInputError(f"{label} is a {ref.kind} file fixed at {chw[1]}x{chw[2]}; --input-size "
                                f"{input_size[0]}x{input_size[1]} applies to models and artifacts only")
        chw = (chw[0], *input_size)
    if ref.runs_in_torch:
        try:
            sizes = _module_sizes(ref.module(), chw)
        except RuntimeError as error:
            raise BadInputError(f"{label} cannot run on {chw[1]}x{chw[2]} inputs: {str(error).splitlines()[0]}") from error
    elif ref.kind == "onnx":
        sizes = {"params": float_parameter_count(onnx.load(str(ref.path))), "macs": None,
                 "bytes": {"weights": None, "onnx": ref.path.stat().st_size}}
    else:
        sizes = {"params": None, "macs": None, "bytes": {"engine": ref.path.stat().st_size}}
    sizes["plan_digest"] = ref.plan_digest
    sizes["input_shape"] = list(chw)
    return BenchModel(label, ref, chw, sizes)


def require_same_input(models: list[BenchModel]) -> None:
    """Speedups are defined only between equal input shapes."""
    shapes = {model.input_chw for model in models}
    if len(shapes) > 1:
        listed = ", ".join(f"{model.label}: {'x'.join(map(str, model.input_chw))}" for model in models)
        raise BadInputError(
            f"the models take different input sizes ({listed}); speedups between them would be meaningless: "
            "put them on one size with --input-size (models and artifacts only)"
        )
