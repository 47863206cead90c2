"""The export task: a model -> one verified ONNX file, optionally an int8 Q/DQ copy and a
TensorRT engine checked against onnxruntime (``deploy``); and the verify task: an ONNX file
proved against the model it came from (``verify_file``). Every optional dependency and piece of
hardware is checked before any work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from foadx.atomic import write_json
from foadx.errors import BadInputError
from foadx.export import ParityFailedError, export_onnx
from foadx.export.loaders import ExportOptions
from foadx.export.onnx_export import DEFAULT_OPSET, check_opset, parse_batch
from foadx.export.quantize import DEFAULT_MIN_COSINE, Int8Options
from foadx.optional import require_tensorrt
from foadx.runtime.engine_options import EngineOptions, EngineProfile
from foadx.tasks.checks import finite
from foadx.tasks.settings import ParitySettings


@dataclass(frozen=True)
class Int8Request:
    """An int8 Q/DQ copy: calibration method, weight scales per channel, layers kept in fp32
    (``first``, ``last`` or node names), calibration images (``data``, ``count``; the last
    quarter, at least 8, is held out to check the int8 file)."""

    method: str = "minmax"
    per_channel: bool = True
    fp32_layers: tuple[str, ...] = ()
    data: str = "demo"
    count: int = 256


@dataclass(frozen=True)
class EngineRequest:
    """A TensorRT engine: its batch profile (None: 1 / min / max(opt, min)), workspace limit in
    GiB and timing cache file."""

    min_batch: int | None = None
    opt_batch: int | None = None
    max_batch: int | None = None
    workspace_gb: float | None = None
    timing_cache: Path | None = None


@dataclass(frozen=True)
class ExportRequest:
    """What an export is asked for. ``target`` None: ``tensorrt`` with an engine, else
    ``ort-cpu``; ``batch`` None: the target's. With ``precision`` int8 the parity settings'
    cosine floor is the int8 file's (default 0.99) and the fp32 file keeps fp32's."""

    opset: int | None = None  # None: DEFAULT_OPSET (18, the dynamo exporter)
    target: str | None = None
    batch: int | str | None = None
    prelu_rewrite: bool | None = None
    prelu_form: str = "auto"
    verify: bool = True
    parity: ParitySettings = field(default_factory=ParitySettings)
    precision: str = "fp32"
    int8: Int8Request = field(default_factory=Int8Request)
    engine: EngineRequest | None = None
    report: Path | None = None
    data: str = "demo"  # the images parity is proved on ('none': random inputs)
    images: int = 16

    def options(self) -> DeployOptions:
        """The deploy options this request means (every default decided here).

        Raises:
            BadInputError: an option out of range or contradicting another;
            MissingDependencyError: an engine asked for where TensorRT or a GPU is missing.
        """
        from foadx.export.targets import get_target

        finite("workspace_gb", self.engine.workspace_gb if self.engine else None)
        int8_floor = self.parity.min_cosine if self.precision == "int8" and self.parity.min_cosine is not None \
            else DEFAULT_MIN_COSINE
        fp32_parity = self.parity.without_cosine_floor() if self.precision == "int8" else self.parity
        form = get_target(self.target or ("tensorrt" if self.engine else "ort-cpu"))
        batch = parse_batch(form.batch if self.batch is None else self.batch)
        opset = check_opset(DEFAULT_OPSET if self.opset is None else self.opset)
        options = DeployOptions(
            export=ExportOptions(opset, batch, None, self.prelu_rewrite, self.prelu_form, form.name),
            verify=self.verify,
            verify_options={"tolerances": fp32_parity.tolerances(), "strict": self.parity.strict},
            precision=self.precision,
            int8=Int8Options(self.int8.method, self.int8.per_channel, self.int8.fp32_layers, int8_floor),
            trt=self.engine is not None, engine=self._engine_options(batch), report=self.report)
        check_deploy_request(options)
        return options

    def _engine_options(self, batch: int | str) -> EngineOptions | None:
        engine = self.engine
        if engine is None:
            return None
        profile = engine_profile(batch, engine.min_batch, engine.opt_batch, engine.max_batch)
        return EngineOptions(self.precision, profile, engine.workspace_gb,
                             str(engine.timing_cache) if engine.timing_cache else None)


@dataclass(frozen=True)
class DeployOptions:
    """What ``foadx export`` was asked for: the ONNX form, its verification, and optionally an
    int8 Q/DQ copy and a TensorRT engine with its profile."""

    export: ExportOptions = ExportOptions()
    verify: bool = True
    verify_options: dict[str, Any] = field(default_factory=dict)
    precision: str = "fp32"  # fp32 | fp16 (engine only) | int8
    int8: Int8Options = Int8Options()
    trt: bool = False
    engine: EngineOptions | None = None
    report: Path | None = None


@dataclass
class DeployResult:
    onnx: Any  # ExportResult
    int8: dict[str, Any] | None = None
    engine: dict[str, Any] | None = None
    package: dict[str, Any] | None = None  # insightface's manifest, for --target insightface

    def to_json(self) -> dict[str, Any]:
        summary = self.onnx.to_json()
        if self.package is not None:
            summary["insightface_manifest"] = self.package
        if self.int8 is not None:
            summary["int8"] = self.int8
        if self.engine is not None:
            summary["engine"] = self.engine
        return summary


def engine_profile(batch: int | str, min_batch: int | None, opt_batch: int | None, max_batch: int | None) -> EngineProfile:
    """``--batch N`` fixes the engine's batch; a dynamic batch takes the profile options."""
    fixed = parse_batch(batch)
    if fixed != "dynamic":
        if any(value is not None for value in (min_batch, opt_batch, max_batch)):
            raise BadInputError("a fixed batch fixes the engine's batch: give no min/opt/max batch")
        return EngineProfile.fixed(fixed)
    return EngineProfile(min_batch or 1, opt_batch or min_batch or 1, max_batch or max(opt_batch or 1, min_batch or 1))


def check_deploy_request(options: DeployOptions) -> None:
    """Everything that can be refused without doing work, refused first."""
    if options.precision not in ("fp32", "fp16", "int8"):
        raise BadInputError(f"precision must be fp32, fp16 or int8, got {options.precision!r}")
    if options.precision == "fp16" and not options.trt:
        raise BadInputError("precision fp16 applies to the TensorRT engine: ask for an engine (--trt)")
    if options.trt:
        require_tensorrt()


def deploy(model: nn.Module, out: Path, options: DeployOptions, *,
           verify_images: np.ndarray | None = None,
           calibration_images: Callable[[], np.ndarray] | None = None) -> DeployResult:
    """Export ``model`` to ``out`` (verified), then the int8 copy and the engine if asked."""
    check_deploy_request(options)
    try:
        exported = export_onnx(model, out, **asdict(options.export), verify=options.verify,
                               verify_options={**options.verify_options, "images": verify_images})
    except ParityFailedError as error:
        if options.report is not None:
            write_json(options.report, error.report.to_json())
        raise
    if options.report is not None and exported.parity is not None:
        write_json(options.report, exported.parity.to_json())
    result = DeployResult(exported)
    if options.export.target == "insightface":
        from foadx.export.insightface import write_insightface_package

        result.package = write_insightface_package(out, exported.metadata)
    deployed = out
    if options.precision == "int8":
        from foadx.export.quantize import quantize_int8

        deployed = out.with_name(out.stem + ".int8.onnx")
        result.int8 = quantize_int8(out, deployed, calibration_images(),
                                    target="tensorrt" if options.trt else options.export.target, options=options.int8)
    if options.trt:
        result.engine = build_and_check_engine(deployed, out.with_suffix(".engine"), options.engine, verify_images)
    return result


def export_model(ref: Any, out: Path, request: ExportRequest) -> DeployResult:
    """Exports the resolved MODEL ``ref`` (a ``foadx.resolve.ModelRef`` that runs in torch) to
    ``out`` as ``request`` says, proving parity on ``request.data``'s images.

    Raises:
        BadInputError, DataError: bad options or data (exit 3); ParityFailedError (exit 4);
        MissingDependencyError: TensorRT or a GPU is missing for an engine (exit 6).
    """
    options = request.options()
    _refuse_writing_into_the_source(ref, out)
    network = ref.module()
    verification = model_images(ref, request.data, request.images) if request.verify or options.trt else None
    # read before the export, so that unreadable calibration data is refused before minutes of work
    calibration = model_images(ref, request.int8.data, request.int8.count) if options.precision == "int8" else None
    return deploy(network, out, options, verify_images=verification, calibration_images=lambda: calibration)


def _refuse_writing_into_the_source(ref: Any, out: Path) -> None:
    """An export never lands on the file it reads or inside the artifact folder it exports
    (``--out ARTIFACT/weights.pt`` replaced the weights with ONNX bytes).

    Raises:
        BadInputError: ``out`` is the source file or lies inside the source folder (exit 3).
    """
    if ref.path is None:
        return
    source, target = Path(ref.path).resolve(), Path(out).resolve()
    if target == source or (source.is_dir() and target.is_relative_to(source)):
        raise BadInputError(f"--out {out} is, or lies inside, {ref.text}, the model being exported: "
                            "write it elsewhere")


def model_images(ref: Any, data: str, count: int) -> np.ndarray | None:
    """``count`` real images of ``data`` preprocessed as the MODEL ``ref`` expects them, as one
    float32 array (n, C, H, W); None for ``data`` 'none'.

    Raises:
        BadInputError: the model records no normalisation (give 'none'); DataError: unreadable data.
    """
    import torch

    from foadx.data.calibration import images_for

    if data == "none":
        return None
    if ref.source is None:
        raise BadInputError(f"{ref.text} records no normalisation; use no data ('none')")
    source = replace(ref.source, input_size=tuple(ref.input_chw[1:]))  # an ONNX file's own size wins
    return torch.cat(list(images_for(source, data, count, batch_size=count))).numpy()


def verify_file(onnx_file: Path, against: Any, *, images: np.ndarray | None, batches: tuple[int, ...],
                backend: str = "ort-cpu", precision: str = "fp32",
                parity: ParitySettings = ParitySettings()) -> Any:
    """Proves ``onnx_file`` answers like the resolved MODEL ``against`` on ``images`` at each
    batch size in ``backend`` (onnxruntime or OpenVINO) against torch fp32.

    Returns:
        the parity report (``passed``, per-output errors); the caller raises on failure.

    Raises:
        BadInputError: not an ONNX file, or options out of range.
    """
    from foadx.export import verify_onnx

    if onnx_file.suffix != ".onnx":
        raise BadInputError(f"{onnx_file} is not an .onnx file")
    return verify_onnx(onnx_file, against.module(), tolerances=parity.tolerances(precision), strict=parity.strict,
                       batch_sizes=batches, images=images, backend=backend, precision=precision)


def build_and_check_engine(onnx_path: Path, engine_path: Path, options: EngineOptions,
                           images: np.ndarray | None) -> dict[str, Any]:
    from foadx.export.engine_check import check_engine
    from foadx.export.tensorrt import build_engine

    require_tensorrt()
    sidecar = build_engine(onnx_path, engine_path, options)
    return {**sidecar, "parity": check_engine(engine_path, onnx_path, options.precision, images, options.profile)}
