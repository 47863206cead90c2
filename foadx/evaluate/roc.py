"""Verification metrics from genuine and impostor similarity scores: TAR at fixed FARs, ROC AUC,
EER, and the ROC curve, in bounded memory.

Convention: a pair is accepted as one person when its score is **strictly greater than** the
threshold (``score > threshold``); scores are similarities (cosine, higher means more alike).
At threshold t, TAR(t) = #{genuine > t} / G and FAR(t) = #{impostor > t} / I.

- TAR at FAR f: with k = floor(f * I) false accepts allowed, the threshold is the smallest
  candidate t with #{impostor > t} <= k, which (exactly) is the (k+1)-th highest impostor score;
  the point is measurable only when k >= 1, i.e. at least 1/f impostor pairs (else it is listed
  with the reason). f is read as the decimal it is written as (1e-3 is exactly 1/1000).
- EER: over every candidate threshold, the one where |FAR - FRR| is smallest (FRR = 1 - TAR),
  the first in ascending order on a tie; EER = (FAR + FRR) / 2 there.
- AUC: P(genuine > impostor) + P(genuine = impostor) / 2 (the Mann-Whitney statistic, equal to
  the trapezoidal area under the full ROC).

Memory: ``ScoreCounter`` accumulates scores block by block. While it holds at most
``EXACT_LIMIT`` scores (2**24 float32, 64 MiB) every metric is exact (candidate thresholds are
the distinct scores). Past that it folds everything into two histograms of ``BINS`` bins over
[-1, 1] (width w = 2**-19, 8 MiB each): candidates are then the bin edges. The threshold found
is the smallest edge e at or above the exact one t*, so t* <= e < t* + w, FAR still <= f, and TAR
can only be lower than exact, by at most the genuine fraction inside one bin: that bound is
reported per point (``tar_error_bound``). The EER and AUC are likewise exact up to scores that
share a bin (the AUC by at most half the fraction of (genuine, impostor) pairs that share one).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from fractions import Fraction

import numpy as np

from foadx.errors import DataError

FAR_POINTS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
EXACT_LIMIT = 2 ** 24  # scores held exactly (float32: 64 MiB); more go to histograms
BINS = 2 ** 20  # histogram bins over [-1, 1]
BIN_WIDTH = 2.0 / BINS
CURVE_POINTS = 64  # (FAR, TAR) points kept for plotting


@dataclass(frozen=True)
class FarPoint:
    """TAR at one target FAR: ``threshold`` (accept score > threshold), the achieved ``far``
    (<= target), ``tar``; or ``measurable`` False and the ``reason``. Rates are fractions."""

    far_target: float
    measurable: bool
    tar: float | None = None
    far: float | None = None
    threshold: float | None = None
    tar_error_bound: float = 0.0  # histogram mode: TAR may be this much below exact
    reason: str | None = None


@dataclass(frozen=True)
class RocResult:
    """The metrics of one score distribution: counts of genuine and impostor pairs, ``mode``
    ("exact" or "histogram", with ``bin_width``), AUC, EER with its threshold, the points at
    ``FAR_POINTS`` and a log-spaced ``curve`` of [far, tar] pairs for plotting."""

    genuine: int
    impostor: int
    mode: str
    bin_width: float | None
    auc: float
    eer: float
    eer_threshold: float
    points: list[FarPoint]
    curve: list[list[float]] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        """The fields as a JSON-ready dict (points as dicts)."""
        return asdict(self)

    def point(self, far_target: float) -> FarPoint | None:
        """The point at ``far_target`` (one of the computed targets), or None."""
        return next((p for p in self.points if p.far_target == far_target), None)


class ScoreCounter:
    """Accumulates genuine and impostor scores in blocks (``add``) and computes ``RocResult``
    (``result``): exact while at most ``exact_limit`` scores are held, histogram after."""

    def __init__(self, exact_limit: int = EXACT_LIMIT) -> None:
        self.exact_limit = exact_limit
        self._held: dict[bool, list[np.ndarray]] = {True: [], False: []}
        self._histograms: dict[bool, np.ndarray] | None = None
        self._count = 0

    def add(self, genuine: np.ndarray, impostor: np.ndarray) -> None:
        """Adds 1-D score arrays (cosines in [-1, 1]; values outside are clipped in histogram mode).

        Raises:
            DataError: a score is NaN or infinite (a broken model's embeddings).
        """
        for same, scores in ((True, genuine), (False, impostor)):
            scores = np.asarray(scores, dtype=np.float32).ravel()
            if not np.all(np.isfinite(scores)):
                raise DataError(f"{int(np.sum(~np.isfinite(scores)))} similarity scores are NaN or infinite: "
                                "the model produced non-finite embeddings")
            self._count += len(scores)
            if self._histograms is None:
                self._held[same].append(scores)
            else:
                self._histograms[same] += _histogram(scores)
        if self._histograms is None and self._count > self.exact_limit:
            self._histograms = {same: sum((_histogram(part) for part in parts), np.zeros(BINS, np.int64))
                                for same, parts in self._held.items()}
            self._held = {True: [], False: []}

    def result(self, far_points: tuple[float, ...] = FAR_POINTS) -> RocResult:
        """The metrics of everything added.

        Raises:
            DataError: no genuine or no impostor scores were added.
        """
        if self._histograms is None:
            genuine = np.concatenate(self._held[True]) if self._held[True] else np.zeros(0, np.float32)
            impostor = np.concatenate(self._held[False]) if self._held[False] else np.zeros(0, np.float32)
            values, counts = np.unique(np.concatenate([genuine, impostor]), return_inverse=True)
            genuine_counts = np.bincount(counts[:len(genuine)], minlength=len(values))
            impostor_counts = np.bincount(counts[len(genuine):], minlength=len(values))
            return roc_from_counts(values.astype(np.float64), genuine_counts, impostor_counts, far_points)
        edges = -1.0 + BIN_WIDTH * np.arange(1, BINS + 1)  # bin j holds scores in (edge_j - w, edge_j]
        return roc_from_counts(edges, self._histograms[True], self._histograms[False], far_points,
                               bin_width=BIN_WIDTH)


def _histogram(scores: np.ndarray) -> np.ndarray:
    """Counts per bin (e - w, e] over [-1, 1]; the lowest bin also holds -1 (and anything clipped)."""
    index = np.ceil((scores.astype(np.float64) + 1.0) / BIN_WIDTH).astype(np.int64) - 1
    return np.bincount(np.clip(index, 0, BINS - 1), minlength=BINS)


def roc_metrics(genuine: np.ndarray, impostor: np.ndarray, far_points: tuple[float, ...] = FAR_POINTS) -> RocResult:
    """Exact metrics of two score arrays held in memory (see the module's conventions).

    Raises:
        DataError: an array is empty or holds a non-finite score.
    """
    counter = ScoreCounter(exact_limit=max(EXACT_LIMIT, len(genuine) + len(impostor)))
    counter.add(genuine, impostor)
    return counter.result(far_points)


def roc_from_counts(values: np.ndarray, genuine: np.ndarray, impostor: np.ndarray,
                    far_points: tuple[float, ...] = FAR_POINTS, bin_width: float | None = None) -> RocResult:
    """Metrics from candidate thresholds ``values`` (ascending) and, per value, the number of
    genuine and impostor scores equal to it (exact) or in the bin ending at it (histogram).

    Raises:
        DataError: no genuine or no impostor scores.
    """
    total_genuine, total_impostor = int(genuine.sum()), int(impostor.sum())
    if total_genuine == 0 or total_impostor == 0:
        raise DataError(f"{total_genuine} genuine and {total_impostor} impostor pairs: verification needs both "
                        "(at least two identities, and an identity with two or more images)")
    accepted_genuine = total_genuine - np.cumsum(genuine)  # scores above each value
    accepted_impostor = total_impostor - np.cumsum(impostor)
    far = accepted_impostor / total_impostor
    frr = (total_genuine - accepted_genuine) / total_genuine
    best = int(np.argmin(np.abs(far - frr)))
    below_impostor = np.concatenate([[0], np.cumsum(impostor)[:-1]])
    auc = float((np.sum(genuine * below_impostor) + 0.5 * np.sum(genuine * impostor)) / (total_genuine * total_impostor))
    points = [_far_point(target, values, genuine, accepted_genuine, accepted_impostor, total_impostor,
                         bin_width is not None) for target in far_points]
    return RocResult(genuine=total_genuine, impostor=total_impostor, mode="exact" if bin_width is None else "histogram",
                     bin_width=bin_width, auc=auc, eer=float((far[best] + frr[best]) / 2),
                     eer_threshold=float(values[best]), points=points,
                     curve=_curve(accepted_genuine, accepted_impostor, total_genuine, total_impostor))


def allowed_false_accepts(far_target: float, impostors: int) -> int:
    """floor(far_target * impostors), with ``far_target`` read as the decimal it is written as."""
    return math.floor(Fraction(repr(float(far_target))) * impostors)


def _far_point(target: float, values: np.ndarray, genuine: np.ndarray, accepted_genuine: np.ndarray,
               accepted_impostor: np.ndarray, total_impostor: int, histogram: bool) -> FarPoint:
    allowed = allowed_false_accepts(target, total_impostor)
    if allowed < 1:
        return FarPoint(target, False, reason=f"{total_impostor} impostor pairs; FAR {target:g} needs at least "
                                              f"{math.ceil(1 / target)}")
    index = _first_at_most(accepted_impostor, allowed)
    total_genuine = int(genuine.sum())
    return FarPoint(target, True, tar=float(accepted_genuine[index] / total_genuine),
                    far=float(accepted_impostor[index] / total_impostor), threshold=float(values[index]),
                    tar_error_bound=float(genuine[index] / total_genuine) if histogram else 0.0)


def _first_at_most(accepted: np.ndarray, allowed: int) -> int:
    """The first (lowest-threshold) index where the non-increasing ``accepted`` is <= ``allowed``."""
    return int(np.searchsorted(-accepted, -allowed, side="left"))


def _curve(accepted_genuine: np.ndarray, accepted_impostor: np.ndarray, total_genuine: int,
           total_impostor: int) -> list[list[float]]:
    """[far, tar] at ``CURVE_POINTS`` log-spaced FARs from 1/I to 1 (TAR at FAR <= each)."""
    targets = np.logspace(np.log10(1.0 / total_impostor), 0.0, CURVE_POINTS)
    curve = []
    for target in targets:
        index = _first_at_most(accepted_impostor, math.floor(target * total_impostor + 1e-9))
        curve.append([float(accepted_impostor[index] / total_impostor), float(accepted_genuine[index] / total_genuine)])
    return curve
