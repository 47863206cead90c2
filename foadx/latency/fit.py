"""A robust straight line through one unit's latencies at several widths of the one channel
count that varies (docs/latency.md, section 1).

Single units are timed for a fraction of a second each, and one slow moment of the machine puts
an entry 2x off its neighbours; the knapsack, which buys the most value per predicted
millisecond, then picks exactly the widths whose savings are such outliers. Siegel's repeated-
median line (for each point the median slope to the others, the median of those; the median
intercept) ignores up to half the points being wild, where Theil-Sen's single median of slopes
already leans on one outlier in four, and a table's series have 3 to 32 points. A conv's latency
at widths that are multiples of the hardware step is close to affine in either channel count.
The slope is held at >= 0: a narrower conv is never slower.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass

MIN_FIT_POINTS = 3  # below this, a median of slopes is not robust to anything: the entries stand


@dataclass(frozen=True)
class AffineFit:
    intercept: float
    slope: float
    narrowest: int  # the narrowest width measured
    floor_ms: float  # the fastest latency measured: a fitted one is never below it

    def at(self, width: int) -> float:
        """The fitted latency at ``width`` (at least the narrowest measured width's)."""
        return max(self.intercept + self.slope * max(width, self.narrowest), self.floor_ms)


def repeated_median(points: Mapping[int, float]) -> AffineFit:
    """Siegel's repeated-median line through ``points`` (width -> ms), its slope clipped at 0."""
    if len(points) < 2:
        raise ValueError("a line needs two widths")
    slope = max(statistics.median(statistics.median((points[b] - points[a]) / (b - a) for b in points if b != a)
                                  for a in points), 0.0)
    intercept = statistics.median(ms - slope * width for width, ms in points.items())
    return AffineFit(intercept, slope, min(points), min(points.values()))
