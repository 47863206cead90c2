"""The one comparator: two sessions fed the same inputs, each output compared against the
reference (``verify``, the engine check and the int8 check all use ``compare_sessions``).

Three verdicts, each of which can fail an output:
- Polygraphy's tolerance check. ``elemwise`` (the default): an element fails only where it
  exceeds *both* ``|a - r| > atol`` and ``|a - r| / |r| > rtol`` (exact zeros in the reference get
  Polygraphy's epsilon 2.22e-16; NaN fails). ``max``/``mean``/``median``/``quantile``: that
  statistic of the absolute and of the relative errors, failing only where both exceed.
- Scale: the largest error relative to the output's own RMS, ``max |a - r| / RMS(r)``. An
  absolute tolerance means nothing without the output's scale: outputs of magnitude 1e-4 can
  be entirely wrong and still pass ``atol = 1e-3`` (numpy's ``isclose`` documentation warns that
  its default atol does not suit magnitudes much smaller than one).
- Direction: the cosine similarity of every sample of the batch, against a floor.
Errors are computed in float64. Besides the verdict, the smallest tolerances that would have
passed are reported, and the output's magnitude (RMS and max |r|) beside the errors.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from foadx.errors import BadInputError
from foadx.runtime.base import Session

ZERO_EPSILON = 2.220446049250313e-16  # Polygraphy's guard for zeros in the reference
# fp32 vs fp32 with different kernels (conv algorithms, summation order): measured worst on the
# zoo models is ~3e-6 absolute on outputs of magnitude ~1 (docs/results.md), so these leave ~30x margin
# while a single perturbed weight fails by orders of magnitude.
DEFAULT_ATOL = 1e-3
DEFAULT_RTOL = 1e-3
ERROR_STATS = ("elemwise", "max", "mean", "median", "quantile")
# Per precision of the runtime under test: (per-sample cosine floor, max error / RMS of the
# reference). fp32 against fp32 differs by summation order only (measured ~1e-6 of the RMS);
# half precision keeps ~3 decimal digits. int8 is judged by the cosine of every sample alone
# (its element errors are a quantisation step, not a tolerance question): 0.99 is the floor
# below which a face embedding's verification decisions start to change.
PRECISION_FLOORS = {"fp32": (0.9999, 1e-3), "fp16": (0.999, 1e-2), "bf16": (0.999, 2e-2), "int8": (0.99, None)}
# Elementwise (atol, rtol) where a precision needs its own: bf16 keeps 8 significand bits (unit
# roundoff 2^-8 = 3.9e-3 per operation), so a deep network's outputs differ from fp32 by a few
# 1e-2 (0.026 at most on MobileFaceNet's embedding on OpenVINO's bf16 CPU path, cosine 0.99997);
# int8 is judged by cosine and accuracy, not elementwise.
ELEMENT_TOLERANCES = {"bf16": (5e-2, 5e-2), "int8": (math.inf, math.inf)}


@dataclass(frozen=True)
class Tolerances:
    """How two outputs must agree (see the module docstring); ``None`` switches a check off."""

    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL
    min_cosine: float | None = PRECISION_FLOORS["fp32"][0]
    max_scaled_error: float | None = PRECISION_FLOORS["fp32"][1]
    error_stat: str = "elemwise"
    error_quantile: float = 0.99  # Polygraphy's default

    def __post_init__(self) -> None:
        if not (self.atol >= 0 and self.rtol >= 0):  # also refuses NaN
            raise BadInputError(f"tolerances must be >= 0, got atol={self.atol}, rtol={self.rtol}")
        if self.min_cosine is not None and not -1.0 <= self.min_cosine <= 1.0:
            raise BadInputError(f"the cosine floor must be in [-1, 1], got {self.min_cosine}")
        if self.max_scaled_error is not None and not self.max_scaled_error >= 0:
            raise BadInputError(f"the scaled-error limit must be >= 0, got {self.max_scaled_error}")
        if self.error_stat not in ERROR_STATS:
            raise BadInputError(f"--check-error-stat must be one of {', '.join(ERROR_STATS)}, got {self.error_stat!r}")
        if not 0.0 <= self.error_quantile <= 1.0:
            raise BadInputError(f"--error-quantile must be in [0, 1], got {self.error_quantile}")

    @classmethod
    def for_precision(cls, precision: str, **overrides: object) -> "Tolerances":
        """The elementwise tolerances (``ELEMENT_TOLERANCES``, else 1e-3), cosine floor and scale
        limit (``PRECISION_FLOORS``) of ``precision``; ``overrides`` replace any of them."""
        if precision not in PRECISION_FLOORS:
            raise BadInputError(f"no default tolerances for precision {precision!r}: use {', '.join(PRECISION_FLOORS)}")
        cosine, scaled = PRECISION_FLOORS[precision]
        atol, rtol = ELEMENT_TOLERANCES.get(precision, (DEFAULT_ATOL, DEFAULT_RTOL))
        return replace(cls(atol, rtol, cosine, scaled), **overrides)

    @classmethod
    def report_only(cls) -> "Tolerances":
        """Measure the differences, fail nothing (an int8 file is judged by accuracy)."""
        return cls(math.inf, math.inf, None, None)


@dataclass(frozen=True)
class OutputComparison:
    """One output of one case compared with its reference: error statistics (absolute in the
    output's units, relative as fractions), cosines, the smallest passing tolerances, and the
    reasons it failed (empty: passed)."""

    name: str
    shape: tuple[int, ...]
    max_abs: float
    max_rel: float
    mean_abs: float
    cosine: float  # of the whole output
    min_sample_cosine: float  # the worst sample of the batch
    rms_reference: float
    max_abs_reference: float
    scaled_error: float  # max_abs / rms_reference
    mismatches: int  # elements failing the elemwise check
    elements: int
    stat_abs: float  # the error statistic checked (elemwise: the max)
    stat_rel: float
    smallest_atol: float  # at the given rtol
    smallest_rtol: float  # at the given atol
    tolerances: Tolerances
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_json(self) -> dict[str, object]:
        data = {**asdict(self), "shape": list(self.shape), "passed": self.passed}
        data.update(data.pop("tolerances"))
        return data


def _worst(values: np.ndarray, where: np.ndarray) -> float:
    chosen = values[where]
    if chosen.size == 0:
        return 0.0
    return float("inf") if np.isnan(chosen).any() else float(chosen.max())


def _statistic(values: np.ndarray, tolerances: Tolerances) -> float:
    if values.size == 0:
        return 0.0
    if np.isnan(values).any():
        return float("inf")
    stat = tolerances.error_stat
    if stat in ("elemwise", "max"):
        return float(values.max())
    if stat == "mean":
        return float(values.mean())
    if stat == "median":
        return float(np.median(values))
    return float(np.quantile(values, tolerances.error_quantile))


def sample_cosines(actual: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Cosine similarity per sample (first axis); 1 where both are zero, 0 where one is."""
    a = actual.reshape(actual.shape[0], -1) if actual.ndim > 1 else actual.reshape(1, -1)
    r = reference.reshape(a.shape)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(r, axis=1)
    dots = np.einsum("ij,ij->i", a, r)
    both_zero = (np.abs(a).sum(axis=1) == 0) & (np.abs(r).sum(axis=1) == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cosines = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), np.where(both_zero, 1.0, 0.0))
    return np.where(np.isnan(cosines), -1.0, cosines)


def compare_output(name: str, actual: np.ndarray, reference: np.ndarray,
                   tolerances: Tolerances | None = None) -> OutputComparison:
    """Compares two arrays of the same shape (N, ...) with Polygraphy's semantics: an element
    fails only where both ``atol`` and ``rtol`` are exceeded; plus the optional per-sample
    cosine floor and error/RMS limit of ``tolerances``.

    Raises:
        BadInputError: the shapes differ.
    """
    tolerances = tolerances or Tolerances()
    if actual.shape != reference.shape:
        raise BadInputError(
            f"output {name!r} has shape {list(actual.shape)} but the reference has {list(reference.shape)}"
        )
    a64, r64 = actual.astype(np.float64), reference.astype(np.float64)
    absolute = np.abs(a64 - r64).ravel()
    relative = absolute / np.where(r64.ravel() == 0, ZERO_EPSILON, np.abs(r64.ravel()))
    over_abs = (absolute > tolerances.atol) | np.isnan(absolute)
    over_rel = (relative > tolerances.rtol) | np.isnan(relative)
    max_abs = _worst(absolute, np.ones_like(over_abs))
    rms = float(np.sqrt(np.mean(r64 ** 2))) if r64.size else 0.0
    scaled = (max_abs / rms if rms > 0 else (0.0 if max_abs == 0 else math.inf))
    whole = sample_cosines(a64.reshape(1, -1), r64.reshape(1, -1))[0] if r64.size else 1.0
    per_sample = sample_cosines(a64, r64) if r64.size else np.ones(1)
    comparison = OutputComparison(
        name=name, shape=tuple(actual.shape), max_abs=max_abs, max_rel=_worst(relative, np.ones_like(over_rel)),
        mean_abs=float(absolute.mean()) if absolute.size else 0.0, cosine=float(whole),
        min_sample_cosine=float(per_sample.min()), rms_reference=rms,
        max_abs_reference=float(np.abs(r64).max()) if r64.size else 0.0, scaled_error=scaled,
        mismatches=int((over_abs & over_rel).sum()), elements=int(absolute.size),
        stat_abs=_statistic(absolute, tolerances), stat_rel=_statistic(relative, tolerances),
        smallest_atol=_worst(absolute, over_rel), smallest_rtol=_worst(relative, over_abs), tolerances=tolerances,
    )
    comparison.failures.extend(_failures(comparison, per_sample))
    return comparison


def _failures(result: OutputComparison, per_sample: np.ndarray) -> list[str]:
    tolerances, failures = result.tolerances, []
    if tolerances.error_stat == "elemwise":
        if result.mismatches:
            failures.append(f"{result.mismatches} of {result.elements} elements exceed atol and rtol")
    elif result.stat_abs > tolerances.atol and result.stat_rel > tolerances.rtol:
        failures.append(f"{tolerances.error_stat} error {result.stat_abs:.3g} > atol and {result.stat_rel:.3g} > rtol")
    if tolerances.max_scaled_error is not None and not result.scaled_error <= tolerances.max_scaled_error:
        failures.append(f"max error is {result.scaled_error:.3g} x the output's RMS {result.rms_reference:.3g} "
                        f"(limit {tolerances.max_scaled_error:g})")
    if tolerances.min_cosine is not None and not result.min_sample_cosine >= tolerances.min_cosine:
        worst = int(np.argmin(per_sample))
        failures.append(f"sample {worst} has cosine {result.min_sample_cosine:.6f} < {tolerances.min_cosine:g}")
    return failures


@dataclass(frozen=True)
class InputBatch:
    """One batch both sessions are fed: ``kind`` is "random" or "images"."""

    kind: str
    array: np.ndarray


@dataclass(frozen=True)
class CaseComparison:
    """Every output of one input batch (``inputs``: random or images) at one batch size, and the
    task agreement on real images (percent)."""

    inputs: str
    batch: int
    outputs: list[OutputComparison]
    agreement_pct: float | None = None  # same top-1 / same nearest neighbour, real images only

    @property
    def passed(self) -> bool:
        return all(output.passed for output in self.outputs)

    def to_json(self) -> dict[str, object]:
        return {"inputs": self.inputs, "batch": self.batch, "passed": self.passed,
                "agreement_pct": self.agreement_pct, "outputs": [output.to_json() for output in self.outputs]}


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


def paired_outputs(actual: Session, reference: Session) -> list[tuple[int, int]]:
    """(index in ``actual``, index in ``reference``) of each output pair, in ``actual``'s order:
    by name where both sessions name the same outputs (a torch model and the ONNX file foadx
    exported from it, ``foadx.outputs``), else by position (a lone output named for the task,
    or a file named elsewhere).

    Raises:
        BadInputError: the two sessions give different numbers of outputs.
    """
    names, reference_names = list(actual.output_names), list(reference.output_names)
    if len(names) != len(reference_names):
        raise BadInputError(f"{actual.backend} gives {len(names)} output(s) ({', '.join(names)}), "
                            f"{reference.backend} {len(reference_names)} ({', '.join(reference_names)}): "
                            "not the same model")
    if sorted(names) == sorted(reference_names) and len(set(names)) == len(names):
        return [(index, reference_names.index(name)) for index, name in enumerate(names)]
    return [(index, index) for index in range(len(names))]


def compare_sessions(actual: Session, reference: Session, inputs: list[InputBatch],
                     tolerances: Tolerances, task: str | None = None) -> list[CaseComparison]:
    """Feeds every batch to both sessions and compares output by output, paired by
    ``paired_outputs``; on real images also the task agreement of ``actual``'s first output
    (``task``: classify or face)."""
    pairs = paired_outputs(actual, reference)
    cases = []
    for batch in inputs:
        ran, reference_ran = actual.run(batch.array), reference.run(batch.array)
        got, want = [ran[i] for i, _ in pairs], [reference_ran[j] for _, j in pairs]
        outputs = []
        for name, a, r in zip(actual.output_names, got, want):
            if a.shape != r.shape:
                raise BadInputError(
                    f"output {name!r} is {list(a.shape)} on {actual.backend} but {list(r.shape)} on "
                    f"{reference.backend}: not the same model"
                )
            outputs.append(compare_output(name, a, r, tolerances))
        agreement = task_agreement(got[0], want[0], task) if task and batch.kind == "images" else None
        cases.append(CaseComparison(batch.kind, len(batch.array), outputs, agreement))
    return cases


def task_agreement(actual: np.ndarray, reference: np.ndarray, task: str) -> float | None:
    """Percent of samples on which both give the same answer: the same top-1 class
    (``classify``), or the same nearest neighbour by cosine among the batch's other images
    (``face``: the decision a verification or search would make). None where undefined."""
    if actual.ndim != 2 or len(actual) == 0:
        return None
    if task == "classify":
        return float(np.mean(actual.argmax(1) == reference.argmax(1)) * 100.0)
    if task == "face" and len(actual) >= 2:
        return float(np.mean(_nearest(actual) == _nearest(reference)) * 100.0)
    return None


def _nearest(embeddings: np.ndarray) -> np.ndarray:
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-30)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    return similarity.argmax(1)
