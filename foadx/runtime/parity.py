"""The one comparator: two sessions fed the same inputs, each output compared against the
reference with Polygraphy's tolerance semantics (``verify``, the engine check and the int8 check
all use ``compare_sessions``).

An element fails only where it exceeds *both* tolerances: ``|a - r| > atol`` and
``|a - r| / |r| > rtol`` (exact zeros in the reference get Polygraphy's epsilon 2.22e-16, and
NaN fails). Errors are computed in float64. Besides the verdict, the smallest tolerances that
would have passed are reported: the smallest atol at the given rtol, and the smallest rtol at
the given atol — the numbers a user needs to decide whether a failure matters.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from foadx.errors import BadInputError
from foadx.runtime.base import Session

ZERO_EPSILON = 2.220446049250313e-16  # Polygraphy's guard for zeros in the reference
# fp32 vs fp32 with different kernels (conv algorithms, summation order): measured worst on the
# zoo models is ~3e-6 absolute on outputs of magnitude ~1 (README), so these leave ~30x margin
# while a single perturbed weight fails by orders of magnitude.
DEFAULT_ATOL = 1e-3
DEFAULT_RTOL = 1e-3


@dataclass(frozen=True)
class Tolerances:
    """An element fails where both ``atol`` and ``rtol`` are exceeded; with ``min_cosine`` an
    output also fails when its cosine similarity to the reference falls below it."""

    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL
    min_cosine: float | None = None

    def __post_init__(self) -> None:
        if not (self.atol >= 0 and self.rtol >= 0) or math.isnan(self.atol) or math.isnan(self.rtol):
            raise BadInputError(f"tolerances must be >= 0, got atol={self.atol}, rtol={self.rtol}")
        if self.min_cosine is not None and not -1.0 <= self.min_cosine <= 1.0:
            raise BadInputError(f"the cosine floor must be in [-1, 1], got {self.min_cosine}")

    @classmethod
    def report_only(cls) -> "Tolerances":
        """Measure the differences, fail nothing (an int8 file is judged by accuracy)."""
        return cls(math.inf, math.inf, None)


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
    min_cosine: float | None = None

    @property
    def passed(self) -> bool:
        return self.mismatches == 0 and (self.min_cosine is None or self.cosine >= self.min_cosine)

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "shape": list(self.shape), "passed": self.passed}


def _worst(values: np.ndarray, where: np.ndarray) -> float:
    chosen = values[where]
    if chosen.size == 0:
        return 0.0
    return float("inf") if np.isnan(chosen).any() else float(chosen.max())


def compare_output(name: str, actual: np.ndarray, reference: np.ndarray, atol: float, rtol: float,
                   min_cosine: float | None = None) -> OutputComparison:
    Tolerances(atol, rtol, min_cosine)  # validates
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
        min_cosine=min_cosine,
    )


@dataclass(frozen=True)
class InputBatch:
    """One batch both sessions are fed: ``kind`` is "random" or "images"."""

    kind: str
    array: np.ndarray


@dataclass(frozen=True)
class CaseComparison:
    inputs: str
    batch: int
    outputs: list[OutputComparison]

    @property
    def passed(self) -> bool:
        return all(output.passed for output in self.outputs)

    def to_json(self) -> dict[str, object]:
        return {"inputs": self.inputs, "batch": self.batch, "passed": self.passed,
                "outputs": [output.to_json() for output in self.outputs]}


def comparison_inputs(input_chw: tuple[int, int, int], batch_sizes: tuple[int, ...],
                      images: np.ndarray | None, seed: int = 0) -> list[InputBatch]:
    """Seeded random batches at each size, then (if given) real preprocessed images at each
    size, each size starting at another offset so the batches are not all the same images."""
    rng = np.random.default_rng(seed)
    batches = [InputBatch("random", rng.standard_normal((size, *input_chw), dtype=np.float32)) for size in batch_sizes]
    if images is not None:
        images = np.asarray(images, dtype=np.float32)
        if images.ndim != 4 or tuple(images.shape[1:]) != tuple(input_chw) or len(images) == 0:
            raise BadInputError(f"comparison images are {list(images.shape[1:])}, the model takes {list(input_chw)}")
        for offset, size in enumerate(batch_sizes):
            indices = (np.arange(size) + offset * 7) % len(images)
            batches.append(InputBatch("images", images[indices]))
    return batches


def compare_sessions(actual: Session, reference: Session, inputs: list[InputBatch],
                     tolerances: Tolerances) -> list[CaseComparison]:
    """Feeds every batch to both sessions and compares output by output, in order."""
    cases = []
    for batch in inputs:
        got, want = actual.run(batch.array), reference.run(batch.array)
        if len(got) != len(want):
            raise BadInputError(
                f"{actual.backend} gives {len(got)} output(s), {reference.backend} {len(want)}: not the same model"
            )
        outputs = []
        for name, a, r in zip(actual.output_names, got, want):
            if a.shape != r.shape:
                raise BadInputError(
                    f"output {name!r} is {list(a.shape)} on {actual.backend} but {list(r.shape)} on "
                    f"{reference.backend}: not the same model"
                )
            outputs.append(compare_output(name, a, r, tolerances.atol, tolerances.rtol, tolerances.min_cosine))
        cases.append(CaseComparison(batch.kind, len(batch.array), outputs))
    return cases
