"""Speedups from interleaved rounds, with an interval and a verdict on what they support.

``foadx.runtime.measure_interleaved`` times every configuration in turn in each round, so round
i of the reference and round i of a model ran under the same machine state, and
r_i = reference_i / model_i (round medians, ms) are paired ratios. The speedup is their median.

The interval is the distribution-free confidence interval for a median from order statistics:
[r_(k), r_(n+1-k)] holds the median of the ratios' distribution with probability
1 - 2 P(B <= k - 1), B ~ Binomial(n, 1/2), when the rounds are independent draws of one
continuous distribution (W. J. Conover, Practical Nonparametric Statistics, 3rd ed., 1999,
section 3.2, the confidence interval for a quantile, at p = 1/2). ``k`` is the largest rank whose
coverage is at least ``MIN_COVERAGE``; with foadx's default 5 rounds that is k = 1, the min-max
of the ratios, at 1 - 2/32 = 93.75%. A drifting machine breaks the independence, so the
coverage is the nominal one; pairing within a round is what keeps drift out of each ratio.

The verdict (one rule, ``verdict``), first match wins:
``too few rounds`` when no rank reaches ``MIN_COVERAGE`` (4 rounds or fewer: the min-max of 4
covers 87.5%); ``unstable`` when the interval spans more than ``MAX_SPREAD`` (hi / lo) or
either model's p90 / p50 exceeds ``MAX_TAIL``; ``no measurable difference`` when the interval
holds 1.0; else ``supported``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from foadx.errors import BadInputError
from foadx.report.speedup import FEW_ROUNDS, NO_DIFFERENCE, REFERENCE, SUPPORTED, UNPAIRED, UNSTABLE

MIN_COVERAGE = 0.90  # the confidence the interval must reach for its ratio to be stated
MAX_SPREAD = 1.5  # hi / lo of the interval: wider, and the ratio is not known to within a factor 1.5
MAX_TAIL = 3.0  # p90 / p50 of either model: a tenth of its runs 3x slower than its median is a busy machine
SPEEDUP_FIELDS = ("speedup_vs_first", "speedup_rounds", "speedup_interval", "speedup_coverage", "speedup_verdict")


def median_coverage(rounds: int, rank: int) -> float:
    """P(r_(rank) <= median <= r_(rounds + 1 - rank)) for ``rounds`` independent continuous
    draws: 1 - 2 sum_{i < rank} C(rounds, i) / 2^rounds. ``median_coverage(5, 1)`` is 0.9375."""
    return 1.0 - 2.0 * sum(math.comb(rounds, i) for i in range(rank)) / 2.0 ** rounds


def interval_rank(rounds: int) -> int:
    """The largest rank k <= (rounds + 1) / 2 whose interval reaches ``MIN_COVERAGE``; 1 (the
    min-max, below it) when none does."""
    ranks = [k for k in range(1, (rounds + 1) // 2 + 1) if median_coverage(rounds, k) >= MIN_COVERAGE]
    return max(ranks, default=1)


@dataclass(frozen=True)
class Speedup:
    """A speedup and what backs it.

    Attributes:
        value: the median of the per-round ratios (reference ms / model ms), or of medians
            where unpaired.
        rounds: the per-round ratios, or None where unpaired.
        interval: (lo, hi) of the ratios' order statistics, or None where unpaired.
        coverage: the interval's nominal confidence (0..1), or None.
        verdict: one of ``foadx.report.speedup.VERDICTS``.
    """

    value: float
    rounds: list[float] | None = None
    interval: tuple[float, float] | None = None
    coverage: float | None = None
    verdict: str = SUPPORTED

    def fields(self) -> dict[str, Any]:
        """The latency report's speedup fields of a result row."""
        return dict(zip(SPEEDUP_FIELDS, (self.value, self.rounds, list(self.interval) if self.interval else None,
                                         self.coverage, self.verdict)))


def verdict(interval: tuple[float, float], coverage: float, tail: float) -> str:
    """What an interval (lo, hi) at ``coverage``, with the larger p90 / p50 of the two models
    (``tail``), supports: the module's rule."""
    low, high = interval
    if coverage < MIN_COVERAGE:
        return FEW_ROUNDS
    if high / low > MAX_SPREAD or tail > MAX_TAIL:
        return UNSTABLE
    return NO_DIFFERENCE if low <= 1.0 <= high else SUPPORTED


def paired_speedup(reference_ms: Sequence[float], model_ms: Sequence[float], tail: float = 1.0) -> Speedup:
    """The speedup of a model over the reference from their round medians (ms, the same rounds
    in the same order); ``tail`` is the larger p90 / p50 of the two.

    Raises:
        BadInputError: no rounds, a different number of rounds, or a median that is not > 0.
    """
    if not reference_ms or len(reference_ms) != len(model_ms):
        raise BadInputError(f"paired rounds need the same number of rounds, got {len(reference_ms)} and {len(model_ms)}")
    if min(*reference_ms, *model_ms) <= 0:
        raise BadInputError("round medians must be > 0 ms")
    ratios = [reference / model for reference, model in zip(reference_ms, model_ms)]
    value, interval, coverage = median_interval(ratios)
    return Speedup(value, ratios, interval, coverage, verdict(interval, coverage, tail))


def median_interval(values: Sequence[float]) -> tuple[float, tuple[float, float], float]:
    """The median of ``values`` (one per interleaved round or pair), its order-statistics
    interval (lo, hi) at rank ``interval_rank`` and that interval's nominal coverage: the one
    interval foadx states for a measured ratio or latency (bench, sweep, latency acceptance).

    Raises:
        BadInputError: no values.
    """
    if not values:
        raise BadInputError("a measured interval needs at least one round")
    ordered = sorted(values)
    rank = interval_rank(len(ordered))
    middle = len(ordered) // 2
    median = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    return median, (ordered[rank - 1], ordered[-rank]), median_coverage(len(ordered), rank)


def _tail(row: dict[str, Any]) -> float:
    latency = row["latency_ms"]
    return latency["p90"] / latency["p50"] if "p90" in latency else 1.0


def row_speedup(reference: dict[str, Any], row: dict[str, Any]) -> Speedup:
    """The speedup of a latency report's result ``row`` over the ``reference`` row (same backend
    and batch): the reference itself is 1.0 (``reference``); rows foadx measured interleaved are
    paired (``paired_speedup``); rows from elsewhere (trtexec, with a ``source``) are the ratio
    of medians, ``unpaired``."""
    if row is reference:
        return Speedup(1.0, verdict=REFERENCE)
    if "source" in row or "source" in reference:
        return Speedup(reference["median_of_rounds_ms"] / row["median_of_rounds_ms"], verdict=UNPAIRED)
    return paired_speedup(reference["round_medians_ms"], row["round_medians_ms"], max(_tail(reference), _tail(row)))
