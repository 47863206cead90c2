"""What ``foadx bench`` measures: each MODEL argument resolved, sized, and ready for a backend.

A MODEL is a pruned artifact, an ONNX file or a model spec (DESIGN.md). Module backends get the
module; ONNX backends get the file, exported on the fly with foadx's default export choices when
the user gave a module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from foadx.errors import BadInputError
from foadx.export import export_onnx, load_onnx, metadata_of
from foadx.models.registry import model_source
from foadx.prune.artifact import plan_digest
from foadx.prune.cost import count_cost


@dataclass
class BenchModel:
    label: str
    module: nn.Module | None
    onnx_path: Path | None
    input_shape: tuple[int, int, int]  # C, H, W
    sizes: dict[str, Any] = field(default_factory=dict)
    engine_path: Path | None = None

    def for_backend(self, loads: str, scratch: Path, export_options: dict[str, Any],
                    engine_options: Any = None) -> Any:
        """The module, ONNX or engine path a backend loads; exports (and builds) once into
        ``scratch`` when needed."""
        if loads == "engine":
            if self.engine_path is None:
                from foadx.export.tensorrt import EngineOptions, build_engine

                onnx = self.for_backend("onnx", scratch, {**export_options, "prelu_rewrite": False})
                self.engine_path = scratch / f"engine-{id(self)}.engine"
                build_engine(onnx, self.engine_path, engine_options or EngineOptions())
                self.sizes["bytes"]["engine"] = self.engine_path.stat().st_size
            return self.engine_path
        if self.onnx_path is None and self.module is None:
            raise BadInputError(f"{self.label} is a TensorRT engine: only the trt backend runs it")
        if loads == "torch":
            if self.module is None:
                raise BadInputError(f"{self.label} is an ONNX file: torch backends need a model or artifact")
            return self.module
        if self.onnx_path is None:
            target = scratch / f"model-{id(self)}.onnx"
            self.onnx_path = export_onnx(self.module, target, verify=False, **export_options).path
            self.sizes["bytes"]["onnx"] = self.onnx_path.stat().st_size
        return self.onnx_path


def _module_sizes(module: nn.Module, input_shape: tuple[int, int, int]) -> dict[str, Any]:
    cost = count_cost(module, torch.zeros(1, *input_shape))
    state_bytes = sum(tensor.numel() * tensor.element_size() for tensor in module.state_dict().values())
    plan = getattr(module, "_foadx_plan", None)
    return {
        "params": cost.params, "macs": cost.macs,
        "bytes": {"weights": state_bytes, "onnx": None},
        "plan_digest": plan_digest(plan) if plan else None,
    }


def bench_model(label: str, model: nn.Module | str | Path) -> BenchModel:
    """Wraps a module, an ONNX file or a TensorRT engine (with its foadx sidecar), with params,
    MACs and bytes for the report."""
    if isinstance(model, nn.Module):
        source = model_source(model)
        if source is None:
            raise BadInputError(f"{label}: build the model with foadx.build_model so its input size is known")
        shape = (3, *source.input_size)
        return BenchModel(label, model.eval(), None, shape, _module_sizes(model, shape))
    path = Path(model)
    if path.suffix in (".engine", ".plan"):
        from foadx.export.tensorrt import read_sidecar

        sidecar = read_sidecar(path)
        sizes = {"params": None, "macs": None, "bytes": {"engine": path.stat().st_size}, "plan_digest": None}
        return BenchModel(label, None, None, tuple(sidecar["input_chw"]), sizes, engine_path=path)
    graph = load_onnx(path)
    dims = [dim.dim_value for dim in graph.graph.input[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or min(dims[1:]) < 1:
        raise BadInputError(f"{path}: foadx benchmarks N x C x H x W image models with fixed C, H, W")
    params = sum(int(torch.Size(tensor.dims).numel()) for tensor in graph.graph.initializer
                 if tensor.data_type == onnx.TensorProto.FLOAT)
    sizes = {"params": params, "macs": None, "bytes": {"weights": None, "onnx": path.stat().st_size},
             "plan_digest": metadata_of(graph).get("plan_digest")}
    return BenchModel(label, None, path, tuple(dims[1:]), sizes)
