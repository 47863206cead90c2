"""``export_onnx``: a PyTorch model to one self-contained, checked, annotated ONNX file.

The dynamo exporter (``torch.export`` + onnxscript) is the default; it only emits opset 18 and
newer, and asked for less it silently keeps 18. So an opset below 18 goes through the legacy
TorchScript exporter, and every file is checked to carry exactly the opset that was asked for.
A dynamic batch is exported from a batch-2 example: a batch-1 example lets ``torch.export``
specialise the batch dimension to a constant.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from foadx._version import __version__
from foadx.atomic import atomic_path, raise_if_refused_write
from foadx.errors import BadInputError, FoadxError, first_line
from foadx.export import passes
from foadx.export.checks import insightface_checks, refuse_failed_checks
from foadx.export.metadata import write_metadata
from foadx.export.targets import get_target
from foadx.module_copy import copy_module
from foadx.outputs import flatten_outputs
from foadx.provenance import Provenance, provenance_of

DYNAMO_MIN_OPSET = 18
DEFAULT_OPSET = 18
LEGACY_MIN_OPSET = 9
INPUT_NAME = "input"
OUTPUT_NAMES = {"face": "embedding", "classify": "logits", "unknown": "output"}


class ExportError(BadInputError):
    """The model cannot be exported as asked (unsupported op, opset, batch ...)."""


@dataclass
class ExportResult:
    """What was written: the file, its opset and graph summary, and the metadata it carries."""

    path: Path
    opset: int
    exporter: str
    batch: int | str
    prelu_rewritten: int
    op_counts: dict[str, int]
    metadata: dict[str, Any]
    file_bytes: int
    parity: Any = None  # a VerifyReport when the export was verified

    def to_json(self) -> dict[str, Any]:
        """The export report: path, opset, exporter, batch, PReLU rewrites, op counts, metadata,
        ``file_bytes`` (bytes) and, when verified, ``parity`` (the parity report)."""
        report = {
            "path": str(self.path), "opset": self.opset, "exporter": self.exporter, "batch": self.batch,
            "prelu_rewritten": self.prelu_rewritten, "op_counts": self.op_counts,
            "metadata": self.metadata, "file_bytes": self.file_bytes,
        }
        if self.parity is not None:
            report["parity"] = self.parity.to_json()
        return report


def parse_batch(batch: int | str) -> int | str:
    """``"dynamic"`` or a positive batch size (ints and digit strings)."""
    if batch == "dynamic":
        return batch
    try:
        size = int(batch)
    except (TypeError, ValueError):
        raise BadInputError(f"batch must be 'dynamic' or a positive integer, got {batch!r}",
                            parameters=("batch",)) from None
    if size < 1:
        raise BadInputError(f"batch must be 'dynamic' or a positive integer, got {batch!r}", parameters=("batch",))
    return size


def check_opset(opset: int) -> int:
    """``opset`` if this onnx can write it and foadx's exporters take it.

    Raises:
        BadInputError: outside LEGACY_MIN_OPSET..onnx.defs.onnx_opset_version() (exit 3).
    """
    if not LEGACY_MIN_OPSET <= opset <= onnx.defs.onnx_opset_version():
        raise BadInputError(f"opset must be in {LEGACY_MIN_OPSET}..{onnx.defs.onnx_opset_version()}, got {opset}",
                            parameters=("opset",))
    return opset


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporters print progress and warnings of their own; foadx reports instead."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def _output_names(model: nn.Module, example: torch.Tensor, task: str) -> list[str]:
    """The ONNX output names, in the order the exporters write them (``foadx.outputs``): a lone
    tensor is named for the task (``embedding``, ``logits``, ``output``), dict keys keep theirs."""
    with torch.inference_mode():
        output = model(example)
    return [name for name, _ in flatten_outputs(output, OUTPUT_NAMES[task], reserved=(INPUT_NAME,))]


def _torch_export(model: nn.Module, example: torch.Tensor, target: Path, opset: int,
                  dynamic: bool, output_names: list[str]) -> str:
    if opset >= DYNAMO_MIN_OPSET:
        shapes = ({0: torch.export.Dim("batch", min=1)},) if dynamic else None
        torch.onnx.export(
            model, (example,), str(target), dynamo=True, external_data=False, opset_version=opset,
            dynamic_shapes=shapes, input_names=[INPUT_NAME], output_names=output_names,
            optimize=True, verbose=False,
        )
        return "dynamo"
    axes = {name: {0: "batch"} for name in [INPUT_NAME, *output_names]} if dynamic else None
    torch.onnx.export(
        model, (example,), str(target), dynamo=False, opset_version=opset, do_constant_folding=True,
        input_names=[INPUT_NAME], output_names=output_names, dynamic_axes=axes,
    )
    return "legacy"


def export_onnx(model: nn.Module, path: str | Path, *, opset: int = DEFAULT_OPSET, batch: int | str | None = None,
                input_size: tuple[int, int] | None = None, prelu_rewrite: bool | None = None,
                prelu_form: str = "auto", target: str = "ort-cpu", input_channels: int | None = None,
                verify: bool = True, verify_options: dict[str, Any] | None = None) -> ExportResult:
    """Exports ``model`` (a foadx-built or any nn.Module) to ``path``; verifies it in onnxruntime.

    The file is written to a temporary path, checked, verified (unless ``verify=False``) and only
    then renamed onto ``path``: a failed export or a parity failure never replaces a good file.
    ``target`` (``foadx.export.targets``) gives the form: the batch and the PReLU rewrite
    unless ``batch``/``prelu_rewrite`` say otherwise, and for ``insightface`` the checks its
    loader makes; ``prelu_form`` is ``auto``, ``depthwise`` or ``elementwise``. ``input_size``
    (H, W) and ``input_channels`` default to the model's input contract (its provenance source);
    a module without one needs both. The graph's input is (N, C, H, W), N fixed or ``dynamic``.

    Returns:
        The ``ExportResult`` (file size in bytes, op counts, foadx metadata; ``parity`` holds the
        ``VerifyReport`` when verified).

    Raises:
        BadInputError: an unknown target, a bad batch, opset or PReLU form, a missing output
            folder, or a module without an input contract and no ``input_size``/``input_channels``
            (CLI exit code 3).
        ExportError: torch.onnx cannot export the model, or wrote another opset (a BadInputError,
            exit code 3).
        ParityFailedError: the exported file fails verification; ``path`` is left as it was
            (exit code 4).
    """
    path = Path(path)
    form = get_target(target)
    batch = parse_batch(form.batch if batch is None else batch)
    provenance = provenance_of(model)
    chw = _checked_request(path, opset, prelu_form, provenance, input_size, input_channels)
    network = _cpu_float_copy(model)
    example = torch.randn(2 if batch == "dynamic" else batch, *chw)
    output_names = _output_names(network, example, provenance.task if provenance else "unknown")
    with atomic_path(path) as temporary:
        exported, exporter = _raw_export(network, example, opset, batch, output_names,
                                         provenance.source.spec if provenance else type(model).__name__)
        rewrite = form.prelu_rewrite if prelu_rewrite is None else prelu_rewrite
        exported, rewritten = passes.rewrite_prelu(exported, prelu_form) if rewrite else (exported, 0)
        metadata = _metadata(model, provenance, chw[1:], batch, output_names, prelu_form if rewritten else "none",
                             exporter, chw[0])
        metadata["target"] = form.name
        _finish(exported, metadata, temporary)
        result = ExportResult(
            path=path, opset=opset, exporter=exporter, batch=batch, prelu_rewritten=rewritten,
            op_counts=dict(Counter(node.op_type for node in exported.graph.node)),
            metadata=metadata, file_bytes=temporary.stat().st_size,
        )
        if verify:
            from foadx.export.verify import verify_onnx

            result.parity = verify_onnx(temporary, model, **(verify_options or {}))
            result.parity.path = str(path)
            result.parity.raise_if_failed()
    return result


def _checked_request(path: Path, opset: int, prelu_form: str, provenance: Any, input_size: tuple[int, int] | None,
                     input_channels: int | None) -> tuple[int, int, int]:
    """The input C x H x W, after refusing what cannot be exported (before any work)."""
    if not path.parent.is_dir():
        raise BadInputError(f"output folder does not exist: {path.parent}")
    check_opset(opset)
    if prelu_form not in passes.PRELU_FORMS:
        raise BadInputError(f"PReLU rewrite form must be one of {', '.join(passes.PRELU_FORMS)}, got {prelu_form!r}")
    size = tuple(input_size) if input_size else (provenance.source.input_size if provenance else None)
    channels = input_channels or (provenance.source.input_channels if provenance else None)
    if size is None or channels is None:
        raise BadInputError("this model was not built or pruned by foadx: give input_size=(H, W) and input_channels")
    return (channels, *size)


def _raw_export(network: nn.Module, example: torch.Tensor, opset: int, batch: int | str, output_names: list[str],
                name: str) -> tuple[onnx.ModelProto, str]:
    """The exporter's graph, cleaned, and which exporter wrote it; the opset written is checked."""
    with tempfile.TemporaryDirectory(prefix="foadx-export-") as scratch:
        raw = Path(scratch) / "raw.onnx"
        try:
            with _quiet():
                exporter = _torch_export(network, example, raw, opset, batch == "dynamic", output_names)
        except Exception as error:  # the exporters raise many types; all mean "cannot export"
            raise_if_refused_write(error, scratch)  # a full disk is exit 7, not the model's fault
            raise ExportError(f"torch.onnx cannot export {name}: {first_line(error)}") from error
        exported = onnx.load(str(raw))
    written_opset = _default_domain_opset(exported)
    if written_opset != opset:
        raise ExportError(f"asked for opset {opset}, the {exporter} exporter wrote {written_opset}")
    return passes.clean(exported), exporter


def _finish(exported: onnx.ModelProto, metadata: dict[str, Any], temporary: Path) -> None:
    """Writes the metadata, runs the target's checks and ONNX's full checker, saves the file."""
    write_metadata(exported, metadata)
    if metadata["target"] == "insightface":
        refuse_failed_checks(insightface_checks(exported, metadata), "insightface")
    try:
        onnx.checker.check_model(exported, full_check=True)
    except Exception as error:
        raise FoadxError(f"foadx produced an invalid ONNX graph (please report): {error}") from error
    onnx.save_model(exported, str(temporary))


def _cpu_float_copy(model: nn.Module) -> nn.Module:
    network = copy_module(model).to("cpu").float().eval()
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    return network


def _default_domain_opset(model: onnx.ModelProto) -> int:
    return next(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))


def _metadata(model: nn.Module, provenance: Provenance | None, size: tuple[int, int], batch: int | str,
              output_names: list[str], prelu_rewrite: str, exporter: str, input_channels: int) -> dict[str, Any]:
    task = provenance.task if provenance else "unknown"
    plan = provenance.plan if provenance else None
    meanings = {
        "face": "face embedding (not L2-normalised; compare by cosine similarity)",
        "classify": "class logits (before softmax)",
        "unknown": "model output",
    }
    return {
        "version": __version__,
        "source_model": plan.model.to_json() if plan else {"spec": type(model).__name__},
        "plan_digest": plan.digest() if plan and (plan.is_pruned or plan.finetune) else "unpruned",
        "weights": plan.weights_origin if plan else "not recorded (a model foadx did not build)",
        "input_name": INPUT_NAME,
        "input_shape": ["batch" if batch == "dynamic" else batch, input_channels, *size],
        "mean": list(plan.model.mean) if plan else [],
        "std": list(plan.model.std) if plan else [],
        "channel_order": "RGB",
        "input_range": "pixels / 255, then (x - mean) / std",
        "task": task,
        "outputs": ", ".join(output_names),
        "output_meaning": meanings.get(task, meanings["unknown"]),
        "prelu_rewrite": prelu_rewrite,
        "exporter": exporter,
        **({"training_data": plan.finetune["training_data"]}
           if plan and isinstance((plan.finetune or {}).get("training_data"), dict) else {}),
    }
