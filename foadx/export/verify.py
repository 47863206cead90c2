"""``verify_onnx``: proves an ONNX file answers like the PyTorch model it came from.

onnxruntime (CPU) is compared against torch fp32 on random inputs and on real calibration
images, at several batch sizes, through the one comparator (``foadx.runtime.compare_sessions``)
and the same sessions ``foadx bench`` times.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from foadx.errors import BadInputError, CheckFailedError
from foadx.export.checks import Check, deployability_checks
from foadx.export.metadata import load_onnx, metadata_of
from foadx.provenance import provenance_of
from foadx.report.kinds import envelope
from foadx.runtime import CaseComparison, SessionOptions, Tolerances, compare_sessions, comparison_inputs, open_session
from foadx.runtime.parity import OutputComparison

DEFAULT_BATCH_SIZES = (1, 4, 7)


class ParityFailedError(CheckFailedError):
    """Parity (or, with strict, deployability) failed; carries the full report."""

    def __init__(self, message: str, report: "VerifyReport") -> None:
        super().__init__(message)
        self.report = report


@dataclass
class VerifyReport:
    """The outcome of ``verify_onnx``: every (inputs, batch) case compared with Polygraphy's
    semantics (``foadx.runtime.compare_sessions``: an element fails only where both atol and rtol
    are exceeded), the deployability checks, the file's foadx metadata and the runtime that ran it.
    ``strict`` makes a failed deployability check fail the report too."""

    path: str
    tolerances: Tolerances
    strict: bool
    cases: list[CaseComparison]
    checks: list[Check]
    metadata: dict[str, Any] = field(default_factory=dict)
    runtime: dict[str, Any] = field(default_factory=dict)  # the backend and the precision it ran

    @property
    def parity_passed(self) -> bool:
        """Every case's every output within the tolerances."""
        return all(case.passed for case in self.cases)

    @property
    def checks_passed(self) -> bool:
        """Every deployability check met."""
        return all(check.passed for check in self.checks)

    @property
    def passed(self) -> bool:
        """Parity passed and, when ``strict``, the deployability checks too."""
        return self.parity_passed and (self.checks_passed or not self.strict)

    def _all_outputs(self) -> list[OutputComparison]:
        return [output for case in self.cases for output in case.outputs]

    def worst(self) -> dict[str, Any]:
        """The worst value of each statistic over all cases and outputs: absolute errors in the
        output's units, relative ones and cosines as fractions, ``min_agreement_pct`` in percent
        (None without real images), and the smallest atol/rtol that would have passed."""
        outputs = self._all_outputs()
        agreements = [case.agreement_pct for case in self.cases if case.agreement_pct is not None]
        return {
            "max_abs": max(o.max_abs for o in outputs),
            "max_rel": max(o.max_rel for o in outputs),
            "mean_abs": max(o.mean_abs for o in outputs),
            "min_cosine": min(o.cosine for o in outputs),
            "min_sample_cosine": min(o.min_sample_cosine for o in outputs),
            "max_scaled_error": max(o.scaled_error for o in outputs),
            "min_rms_reference": min(o.rms_reference for o in outputs),
            "max_abs_reference": max(o.max_abs_reference for o in outputs),
            "smallest_passing_atol": max(o.smallest_atol for o in outputs),
            "smallest_passing_rtol": max(o.smallest_rtol for o in outputs),
            "min_agreement_pct": min(agreements) if agreements else None,
        }

    def failures(self) -> list[str]:
        """One line per failed tolerance: inputs, batch, output name and reason."""
        return [f"{case.inputs} batch {case.batch} {output.name}: {reason}"
                for case in self.cases for output in case.outputs for reason in output.failures]

    def summary(self) -> str:
        """One line: verdict, backend, tolerances, worst errors, the first failure and unmet checks."""
        worst, tolerances = self.worst(), self.tolerances
        verdict = "passed" if self.passed else "FAILED"
        ran = self.runtime.get("inference_precision") or self.runtime.get("precision")
        line = (
            f"parity {verdict} ({self.runtime.get('backend', 'ort-cpu')}{f' {ran}' if ran else ''}) on {len(self.cases)} cases (atol={tolerances.atol:g}, rtol={tolerances.rtol:g}, "
            f"{tolerances.error_stat}; cosine floor {tolerances.min_cosine}; error/RMS limit {tolerances.max_scaled_error}): "
            f"max abs {worst['max_abs']:.3g} on outputs of RMS >= {worst['min_rms_reference']:.3g}, "
            f"max error/RMS {worst['max_scaled_error']:.3g}, min sample cosine {worst['min_sample_cosine']:.9f}; "
            f"the element check would pass with atol>={worst['smallest_passing_atol']:.3g} at rtol={tolerances.rtol:g} "
            f"or rtol>={worst['smallest_passing_rtol']:.3g} at atol={tolerances.atol:g}"
        )
        failures = self.failures()
        if failures:
            line += f"; {len(failures)} failure(s), first: {failures[0]}"
        failed_checks = [check.name for check in self.checks if not check.passed]
        if failed_checks:
            line += f"; deployability: {', '.join(failed_checks)} not met" + (" (strict)" if self.strict else "")
        return line

    def raise_if_failed(self) -> None:
        """Raises:
            ParityFailedError: the report did not pass (carries it as ``report``; CLI exit code 4).
        """
        if not self.passed:
            raise ParityFailedError(f"{self.path}: {self.summary()}", self)

    def to_json(self) -> dict[str, Any]:
        """The parity report (kind ``foadx.parity``, stamped by ``foadx.report.kinds.envelope``)."""
        return envelope("foadx.parity", {
            "path": self.path, "passed": self.passed,
            "parity_passed": self.parity_passed, "checks_passed": self.checks_passed, "strict": self.strict,
            "atol": self.tolerances.atol, "rtol": self.tolerances.rtol, "tolerances": asdict(self.tolerances),
            "worst": self.worst(), "failures": self.failures(),
            "cases": [case.to_json() for case in self.cases],
            "checks": [check.to_json() for check in self.checks], "metadata": self.metadata,
            "runtime": self.runtime,
        })


def verify_onnx(
    path: str | Path,
    model: nn.Module,
    *,
    tolerances: Tolerances | None = None,
    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES,
    images: np.ndarray | None = None,
    strict: bool = False,
    seed: int = 0,
    backend: str = "ort-cpu",
    precision: str = "fp32",
    **tolerance_overrides: Any,
) -> VerifyReport:
    """Compares ``path`` run on ``backend`` (onnxruntime or OpenVINO) at ``precision`` with
    ``model`` in torch fp32.

    ``tolerances`` (default: those of ``precision``), with any field overridden by keyword (``atol=...``,
    ``min_cosine=...``). ``images``: real preprocessed images (N, 3, H, W) to compare on besides
    random inputs (and to measure task agreement on); a fixed-batch file is compared at its own
    batch size only.

    Args:
        path: the ONNX file, input (N, C, H, W) with fixed C, H, W.
        model: the torch reference, run on the CPU in fp32.
        batch_sizes: the batch sizes N compared for a dynamic-batch file.
        strict: let failed deployability checks fail the report.
        seed: the seed of the random inputs.

    Returns:
        The report; it does not raise on a failed comparison (call ``raise_if_failed``).

    Raises:
        BadInputError: an unreadable ONNX file, an unknown backend or a precision it does not run,
            an input that is not N x C x H x W with fixed C, H, W, an int8 file without
            ``images``, or out-of-range tolerances (CLI exit code 3).
        MissingDependencyError: the backend needs a GPU or a package that is absent (exit code 6).
    """
    tolerances = replace(tolerances or Tolerances.for_precision(precision), **tolerance_overrides)
    onnx_model = load_onnx(path)
    metadata = metadata_of(onnx_model)
    onnx_session = open_session(backend, path, SessionOptions(precision=precision))
    shape = onnx_session.input_shape
    if len(shape) != 4 or any(dim is None for dim in shape[1:]):
        raise BadInputError(f"{path}: input {onnx_session.input_name!r} must be N x C x H x W with fixed C, H, W")
    torch_session = open_session("torch-cpu", model, SessionOptions(), input_shape=tuple(shape))
    sizes = (shape[0],) if shape[0] is not None else tuple(batch_sizes)
    inputs = comparison_inputs(tuple(shape[1:]), sizes, images, seed)
    if precision == "int8":  # calibrated on images: random inputs say nothing about an int8 file
        if images is None:
            raise BadInputError("verifying an int8 file needs real images (--data)")
        inputs = [batch for batch in inputs if batch.kind == "images"]
    provenance = provenance_of(model)
    task = metadata.get("task") or (provenance.task if provenance else "unknown")
    cases = compare_sessions(onnx_session, torch_session, inputs, tolerances, task)
    return VerifyReport(str(path), tolerances, strict, cases, deployability_checks(onnx_model, task), metadata,
                        onnx_session.settings())
