"""Accepting a measured plan: the median of several interleaved pairs (pruned beside unpruned)
and the interval foadx states for any measured value (``foadx.bench.speedup.median_interval``:
distribution-free, from order statistics; with 5 pairs the min-max, at 93.75%; docs/latency.md,
section 5). A plan is *accepted* when the interval's upper end is within the limit,
*borderline* when only its median is, and *rejected* otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from foadx.bench.speedup import median_interval
from foadx.errors import BadInputError

FINAL_PAIRS = 5
VERDICTS = ("accepted", "borderline", "rejected")


@dataclass(frozen=True)
class Verdict:
    """The median and interval of the pair values, the interval's nominal coverage, and the
    verdict against ``limit``."""

    median: float
    low: float
    high: float
    limit: float
    verdict: str  # one of VERDICTS
    pairs: int = 1
    coverage: float = 0.0


def judge(values: Sequence[float], limit: float) -> Verdict:
    """The verdict on pair values (a pruned latency in ms, or a ratio of pruned to unpruned
    latency, one per interleaved pair) against ``limit`` (the target with its tolerance).

    Raises:
        BadInputError: no values.
    """
    if not values:
        raise BadInputError("a measured plan needs at least one pair")
    median, (low, high), coverage = median_interval(values)
    verdict = "accepted" if high <= limit else "borderline" if median <= limit else "rejected"
    return Verdict(float(median), float(low), float(high), float(limit), verdict, len(values), coverage)
