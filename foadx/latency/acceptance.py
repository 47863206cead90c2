"""Accepting a measured plan: the median of several interleaved pairs (pruned beside unpruned)
and the spread of the pair values (docs/latency.md, section 5).

With n pairs, the smallest and largest pair values bound the true median with probability
1 - 2^(1-n) whatever the distribution (each pair falls on either side of the median with
probability 1/2; the median lies outside [min, max] only if all n fall on one side): 93.75% for
5 pairs. A plan is *accepted* when the interval's upper end is within the limit, *borderline*
when only its median is, and *rejected* otherwise.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from foadx.errors import BadInputError

FINAL_PAIRS = 5
VERDICTS = ("accepted", "borderline", "rejected")


@dataclass(frozen=True)
class Verdict:
    """The median and min-max interval of the pair values and the verdict against ``limit``."""

    median: float
    low: float
    high: float
    limit: float
    verdict: str  # one of VERDICTS
    pairs: int = 1

    @property
    def coverage(self) -> float:
        """The probability that [low, high] holds the true median (distribution-free)."""
        return 1.0 - 2.0 ** (1 - self.pairs) if self.pairs > 1 else 0.0


def judge(values: Sequence[float], limit: float) -> Verdict:
    """The verdict on pair values (a pruned latency in ms, or a ratio of pruned to unpruned
    latency, one per interleaved pair) against ``limit`` (the target with its tolerance).

    Raises:
        BadInputError: no values.
    """
    if not values:
        raise BadInputError("a measured plan needs at least one pair")
    median, low, high = statistics.median(values), min(values), max(values)
    verdict = "accepted" if high <= limit else "borderline" if median <= limit else "rejected"
    return Verdict(float(median), float(low), float(high), float(limit), verdict, len(values))
