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

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

MIN_FIT_POINTS = 3  # below this, a median of slopes is not robust to anything: the entries stand
ROWS_PER_CHUNK = 256  # slope rows computed at once: memory 8 x 256 x n bytes for n points


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
    """Siegel's repeated-median line through ``points`` (width -> ms), its slope clipped at 0.

    O(n^2) time in numpy and O(n) memory per chunk of rows for n points (the table bounds n).

    Raises:
        ValueError: fewer than two widths.
    """
    if len(points) < 2:
        raise ValueError("a line needs two widths")
    widths = np.array(list(points), dtype=np.float64)
    ms = np.array(list(points.values()), dtype=np.float64)
    row_medians = []
    for start in range(0, len(widths), ROWS_PER_CHUNK):
        rows = slice(start, start + ROWS_PER_CHUNK)
        with np.errstate(divide="ignore", invalid="ignore"):
            slopes = (ms[None, :] - ms[rows, None]) / (widths[None, :] - widths[rows, None])
        slopes[np.arange(slopes.shape[0]), np.arange(start, start + slopes.shape[0])] = np.nan  # a point to itself
        row_medians.append(np.nanmedian(slopes, axis=1))
    slope = max(float(np.median(np.concatenate(row_medians))), 0.0)
    intercept = float(np.median(ms - slope * widths))
    return AffineFit(intercept, slope, min(points), min(points.values()))
