"""Multi-stage library workflows the CLI only parses options for and renders:

- ``finetune_to_artifact``: fine-tune, then write the artifact (plan + weights) beside the
  training checkpoints, replacing an earlier output folder as a whole;
- ``deploy``: export -> (int8 Q/DQ) -> (TensorRT engine) -> engine check, with every optional
  dependency and piece of hardware checked before any work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from foadx.atomic import atomic_directory, check_folder_target, prepare_output, write_json
from foadx.errors import BadInputError
from foadx.export import ParityFailedError, export_onnx
from foadx.export.loaders import ExportOptions
from foadx.export.onnx_export import parse_batch
from foadx.export.quantize import Int8Options
from foadx.optional import require_tensorrt
from foadx.pruning.artifact import ARTIFACT_FILES, PLAN_FILE, record_training, write_artifact_files
from foadx.provenance import provenance_of
from foadx.runtime.engine_options import EngineOptions, EngineProfile
from foadx.train import CHECKPOINT_FILE, METRICS_FILE, FinetuneConfig, finetune
from foadx.data.labeled import LabeledImages

FINETUNE_FILES = ARTIFACT_FILES | {CHECKPOINT_FILE, METRICS_FILE}


def check_finetune_output(out: str | Path, *, resume: bool, force: bool) -> Path:
    """Before any work: ``--resume`` needs the earlier run's folder; otherwise the folder must be
    new, empty, an earlier fine-tune output, or replaced with ``force``."""
    if resume:
        target = prepare_output(out, "folder")
        if not (target / CHECKPOINT_FILE).is_file():
            raise BadInputError(f"--resume: no {CHECKPOINT_FILE} in {target}")
        return target
    return check_folder_target(out, _own_finetune_output, force, "foadx finetune")


def _own_finetune_output(folder: Path) -> bool:
    """An earlier fine-tune's folder: finished (with a plan) or killed (a checkpoint only)."""
    names = {entry.name for entry in folder.iterdir()}
    return names <= FINETUNE_FILES and bool(names & {PLAN_FILE, CHECKPOINT_FILE})


def finetune_to_artifact(
    model: nn.Module,
    data: LabeledImages,
    out: str | Path,
    config: FinetuneConfig,
    record: dict[str, Any],
    *,
    resume: bool = False,
    force: bool = False,
    **training: Any,
) -> list[dict[str, Any]]:
    """Fine-tunes ``model`` and writes it as an artifact into ``out`` with its checkpoint and
    metrics. Into a new or empty folder the run trains in place, so a run that is killed or
    diverges leaves its last good checkpoint there for ``--resume``; an existing earlier output
    (or a ``force``-d folder) is replaced as a whole only when the new run is done."""
    from foadx.train.distributed import Distributed

    target = check_finetune_output(out, resume=resume, force=force)
    processes = Distributed.from_environment(training.get("device"))
    fresh_folder = not target.exists() or not any(target.iterdir())
    if resume or fresh_folder or not processes.is_main or processes.world > 1:
        return _train_and_write(model, data, target, config, record, resume, processes.is_main, training)
    with atomic_directory(target) as staging:
        return _train_and_write(model, data, staging, config, record, resume, True, training)


def _train_and_write(model: nn.Module, data: LabeledImages, folder: Path, config: FinetuneConfig,
                     record: dict[str, Any], resume: bool, is_main: bool, training: dict[str, Any]) -> list[dict[str, Any]]:
    history = finetune(model, data, folder, config, resume=resume, **training)
    if is_main:
        model.to("cpu")
        record_training(model, {"config": asdict(config), **record, "epochs": history})
        state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
        write_artifact_files(folder, provenance_of(model).plan, state)
    return history


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
            raise BadInputError("--batch N fixes the engine's batch: drop --min/--opt/--max-batch")
        return EngineProfile.fixed(fixed)
    return EngineProfile(min_batch or 1, opt_batch or min_batch or 1, max_batch or max(opt_batch or 1, min_batch or 1))


def check_deploy_request(options: DeployOptions) -> None:
    """Everything that can be refused without doing work, refused first."""
    if options.precision not in ("fp32", "fp16", "int8"):
        raise BadInputError(f"--precision must be fp32, fp16 or int8, got {options.precision!r}")
    if options.precision == "fp16" and not options.trt:
        raise BadInputError("--precision fp16 applies to the TensorRT engine: add --trt")
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


def build_and_check_engine(onnx_path: Path, engine_path: Path, options: EngineOptions,
                           images: np.ndarray | None) -> dict[str, Any]:
    from foadx.export.engine_check import check_engine
    from foadx.export.tensorrt import build_engine

    require_tensorrt()
    sidecar = build_engine(onnx_path, engine_path, options)
    return {**sidecar, "parity": check_engine(engine_path, onnx_path, options.precision, images, options.profile)}
