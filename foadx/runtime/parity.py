"""Comparing one output against a reference with Polygraphy's tolerance semantics.

An element fails only where it exceeds *both* tolerances: ``|a - r| > atol`` and
``|a - r| / |r| > rtol`` (exact zeros in the reference get Polygraphy's epsilon 2.22e-16, and
NaN fails). Errors are computed in float64. Besides the verdict, the smallest tolerances that
would have passed are reported: the smallest atol at the given rtol, and the smallest rtol at
the given atol — the numbers a user needs to decide whether a failure matters.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from foadx.errors import BadInputError

ZERO_EPSILON = 2.220446049250313e-16  # Polygraphy's guard for zeros in the reference


@dataclass(frozen=True)
class OutputComparison:
    name: str
    shape: tuple[int, ...]
    max_abs: float
    max_rel: float
    mean_abs: float
    cosine: float
    mismatches: int
    elements: int
    atol: float
    rtol: float
    smallest_atol: float  # at the given rtol
    smallest_rtol: float  # at the given atol

    @property
    def passed(self) -> bool:
        return self.mismatches == 0

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "shape": list(self.shape), "passed": self.passed}


def _worst(values: np.ndarray, where: np.ndarray) -> float:
    chosen = values[where]
    if chosen.size == 0:
        return 0.0
    return float("inf") if np.isnan(chosen).any() else float(chosen.max())


def compare_output(name: str, actual: np.ndarray, reference: np.ndarray, atol: float, rtol: float) -> OutputComparison:
    if atol < 0 or rtol < 0:
        raise BadInputError(f"tolerances must be >= 0, got atol={atol}, rtol={rtol}")
    if actual.shape != reference.shape:
        raise BadInputError(
            f"output {name!r} has shape {list(actual.shape)} but the reference has {list(reference.shape)}"
        )
    actual64 = actual.astype(np.float64).ravel()
    reference64 = reference.astype(np.float64).ravel()
    absolute = np.abs(actual64 - reference64)
    guarded = np.where(reference64 == 0, ZERO_EPSILON, np.abs(reference64))
    relative = absolute / guarded
    over_abs = (absolute > atol) | np.isnan(absolute)
    over_rel = (relative > rtol) | np.isnan(relative)
    norms = np.linalg.norm(actual64) * np.linalg.norm(reference64)
    cosine = float(actual64 @ reference64 / norms) if norms > 0 else float(np.array_equal(actual64, reference64))
    return OutputComparison(
        name=name,
        shape=tuple(actual.shape),
        max_abs=_worst(absolute, np.ones_like(over_abs)),
        max_rel=_worst(relative, np.ones_like(over_rel)),
        mean_abs=float(absolute.mean()) if absolute.size else 0.0,
        cosine=cosine,
        mismatches=int((over_abs & over_rel).sum()),
        elements=int(absolute.size),
        atol=atol,
        rtol=rtol,
        smallest_atol=_worst(absolute, over_rel),
        smallest_rtol=_worst(relative, over_abs),
    )
