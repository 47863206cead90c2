"""TensorRT engines from ONNX files, through the TensorRT Python API (10.x; 8.6 where cheap).

Kept thin on purpose: TensorRT cannot be installed on foadx's development machines, so this
module is exercised only where ``import tensorrt`` and a GPU exist (tests marked ``gpu``). All
decisions (the optimization profile, precisions, where files go, the sidecar) are made in plain
Python around it and tested everywhere.

int8 is explicit quantization: build from a Q/DQ ONNX (``foadx.export.quantize``); TensorRT's
implicit int8 calibrators are deprecated since 10.1 and not used.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from foadx.atomic import write_json, write_with
from foadx.errors import BadInputError, FoadxError
from foadx.optional import import_tensorrt, require_cuda
from foadx.report.kinds import envelope
from foadx.runtime.engine_options import EngineOptions, EngineProfile

__all__ = ["EngineOptions", "EngineProfile", "build_engine", "read_sidecar"]

def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def sidecar_path(engine: Path) -> Path:
    return engine.with_name(engine.name + ".json")


def build_engine(onnx_path: str | Path, engine_path: str | Path, options: EngineOptions) -> dict[str, Any]:
    """Parses ``onnx_path``, builds and writes a serialized engine plus its JSON sidecar."""
    from foadx.export.metadata import load_onnx

    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if not engine_path.parent.is_dir():
        raise BadInputError(f"output folder does not exist: {engine_path.parent}")
    model = load_onnx(onnx_path)
    graph_input = model.graph.input[0]
    dims = [dim.dim_value for dim in graph_input.type.tensor_type.shape.dim]
    if len(dims) != 4 or min(dims[1:]) < 1:
        raise BadInputError(f"{onnx_path}: TensorRT engines are built for N x C x H x W inputs with fixed C, H, W")
    if options.precision == "int8" and not any(node.op_type == "QuantizeLinear" for node in model.graph.node):
        raise BadInputError(f"{onnx_path} has no Q/DQ nodes: int8 needs a quantized ONNX (foadx export --precision int8)")
    trt = import_tensorrt()
    torch = require_cuda()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(trt.__version__.split(".")[0])
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(index)) for index in range(parser.num_errors))
        raise FoadxError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    if options.workspace_gb is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace_gb * (1 << 30)))
    if options.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if options.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    profile = builder.create_optimization_profile()
    minimum, optimum, maximum = options.profile.shapes(tuple(dims[1:]))
    profile.set_shape(graph_input.name, minimum, optimum, maximum)
    config.add_optimization_profile(profile)
    cache_path = Path(options.timing_cache) if options.timing_cache else None
    if cache_path is not None:
        cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise FoadxError(f"TensorRT failed to build an engine from {onnx_path} (see its log above)")
    write_with(engine_path, lambda stream: stream.write(bytes(serialized)))
    if cache_path is not None:
        write_with(cache_path, lambda stream: stream.write(bytes(config.get_timing_cache().serialize())))
    capability = torch.cuda.get_device_capability()
    sidecar = envelope("foadx.engine", {
        "engine": engine_path.name,
        "engine_bytes": engine_path.stat().st_size, "tensorrt": trt.__version__,
        "gpu": torch.cuda.get_device_name(), "compute_capability": f"{capability[0]}.{capability[1]}",
        "precision": options.precision, "profile": asdict(options.profile), "input": graph_input.name,
        "input_chw": dims[1:], "source_onnx": onnx_path.name, "source_onnx_sha256": file_digest(onnx_path),
    })
    write_json(sidecar_path(engine_path), sidecar)
    return sidecar


def read_sidecar(engine_path: Path) -> dict[str, Any]:
    path = sidecar_path(engine_path)
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise BadInputError(f"cannot read the engine's sidecar {path}: {error}") from error
