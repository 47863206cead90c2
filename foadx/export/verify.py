"""``verify_onnx``: proves an ONNX file answers like the PyTorch model it came from.

onnxruntime (CPU) is compared against torch fp32 on random inputs and on real calibration
images, at several batch sizes, through the one comparator (``foadx.runtime.compare_sessions``)
and the same sessions ``foadx bench`` times.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from foadx.errors import BadInputError, CheckFailedError
from foadx.export.checks import Check, deployability_checks
from foadx.export.metadata import load_onnx, metadata_of
from foadx.provenance import provenance_of
from foadx.runtime import CaseComparison, SessionOptions, Tolerances, compare_sessions, comparison_inputs, open_session
from foadx.runtime.parity import DEFAULT_ATOL, DEFAULT_RTOL, OutputComparison
DEFAULT_BATCH_SIZES = (1, 4, 7)


class ParityFailedError(CheckFailedError):
    """Parity (or, with strict, deployability) failed; carries the full report."""

    def __init__(self, message: str, report: "VerifyReport") -> None:
        super().__init__(message)
        self.report = report


@dataclass
class VerifyReport:
    path: str
    atol: float
    rtol: float
    strict: bool
    cases: list[CaseComparison]
    checks: list[Check]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def parity_passed(self) -> bool:
        return all(case.passed for case in self.cases)

    @property
    def checks_passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def passed(self) -> bool:
        return self.parity_passed and (self.checks_passed or not self.strict)

    def _all_outputs(self) -> list[OutputComparison]:
        return [output for case in self.cases for output in case.outputs]

    def worst(self) -> dict[str, float]:
        outputs = self._all_outputs()
        return {
            "max_abs": max(o.max_abs for o in outputs),
            "max_rel": max(o.max_rel for o in outputs),
            "mean_abs": max(o.mean_abs for o in outputs),
            "min_cosine": min(o.cosine for o in outputs),
            "smallest_passing_atol": max(o.smallest_atol for o in outputs),
            "smallest_passing_rtol": max(o.smallest_rtol for o in outputs),
        }

    def summary(self) -> str:
        worst = self.worst()
        verdict = "passed" if self.passed else "FAILED"
        line = (
            f"parity {verdict} (atol={self.atol:g}, rtol={self.rtol:g}) on {len(self.cases)} cases: "
            f"max abs {worst['max_abs']:.3g}, max rel {worst['max_rel']:.3g}, min cosine {worst['min_cosine']:.9f}; "
            f"would pass with atol>={worst['smallest_passing_atol']:.3g} at rtol={self.rtol:g} "
            f"or rtol>={worst['smallest_passing_rtol']:.3g} at atol={self.atol:g}"
        )
        failed_checks = [check.name for check in self.checks if not check.passed]
        if failed_checks:
            line += f"; deployability: {', '.join(failed_checks)} not met" + (" (strict)" if self.strict else "")
        return line

    def raise_if_failed(self) -> None:
        if not self.passed:
            raise ParityFailedError(f"{self.path}: {self.summary()}", self)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": 1, "kind": "foadx.parity", "path": self.path, "passed": self.passed,
            "parity_passed": self.parity_passed, "checks_passed": self.checks_passed, "strict": self.strict,
            "atol": self.atol, "rtol": self.rtol, "worst": self.worst(),
            "cases": [case.to_json() for case in self.cases],
            "checks": [check.to_json() for check in self.checks], "metadata": self.metadata,
        }


def verify_onnx(
    path: str | Path,
    model: nn.Module,
    *,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES,
    images: np.ndarray | None = None,
    strict: bool = False,
    seed: int = 0,
) -> VerifyReport:
    """Compares ``path`` in onnxruntime with ``model`` in torch fp32.

    ``images``: real preprocessed images (N, 3, H, W) to compare on besides random inputs; a
    fixed-batch file is compared at its own batch size only.
    """
    tolerances = Tolerances(atol, rtol)
    onnx_model = load_onnx(path)
    metadata = metadata_of(onnx_model)
    onnx_session = open_session("ort-cpu", path)
    shape = onnx_session.input_shape
    if len(shape) != 4 or any(dim is None for dim in shape[1:]):
        raise BadInputError(f"{path}: input {onnx_session.input_name!r} must be N x C x H x W with fixed C, H, W")
    torch_session = open_session("torch-cpu", model, SessionOptions(), input_shape=tuple(shape))
    sizes = (shape[0],) if shape[0] is not None else tuple(batch_sizes)
    inputs = comparison_inputs(tuple(shape[1:]), sizes, images, seed)
    cases = compare_sessions(onnx_session, torch_session, inputs, tolerances)
    provenance = provenance_of(model)
    task = metadata.get("task") or (provenance.task if provenance else "unknown")
    return VerifyReport(str(path), atol, rtol, strict, cases, deployability_checks(onnx_model, task), metadata)
