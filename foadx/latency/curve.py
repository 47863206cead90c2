"""What the latency table's predicted savings buy when measured: a monotone piecewise-linear
curve through whole networks timed beside the unpruned one (docs/latency.md, section 2).

Units timed alone do not add up to the network they come from: on onnxruntime CPU, narrowing a
few layers saves more than their units say (fused re-layouts disappear with them) and narrowing
all of them saves less (the per-call overhead stays). The curve maps the table's own relative
saving p = 1 - predicted/unpruned onto the measured one r = 1 - measured/unpruned through the
points it is given and (0, 0); beyond the last point it keeps the last point's ratio r/p.
"""

from __future__ import annotations

import itertools
from bisect import bisect_right
from collections.abc import Iterable

Point = tuple[float, float]  # (predicted relative saving, measured relative saving)


class SavingsCurve:
    def __init__(self, points: Iterable[Point] = ()) -> None:
        self.points: list[Point] = []
        for point in points:
            self.add(*point)

    def add(self, predicted: float, measured: float) -> None:
        """Adds a measured network; a point at a predicted saving already known replaces it."""
        self.points = sorted([p for p in self.points if abs(p[0] - predicted) > 1e-9] + [(predicted, measured)])

    def _knots(self) -> list[Point]:
        """(0, 0) and the points with a positive predicted saving, made non-decreasing (a
        measured saving below an earlier one is timing noise: the earlier one holds)."""
        knots, highest = [(0.0, 0.0)], 0.0
        for predicted, measured in self.points:
            if predicted > 1e-9:
                highest = max(highest, measured)
                knots.append((predicted, highest))
        return knots

    def measured(self, predicted: float) -> float:
        """The measured relative saving the table's ``predicted`` one stands for."""
        knots = self._knots()
        if len(knots) == 1:
            return predicted
        last_p, last_r = knots[-1]
        if predicted >= last_p:
            return predicted * last_r / last_p
        i = bisect_right([p for p, _ in knots], predicted) - 1
        (p0, r0), (p1, r1) = knots[i], knots[i + 1]
        return r0 + (r1 - r0) * (predicted - p0) / (p1 - p0)

    def predicted_for(self, measured: float) -> float:
        """The predicted saving the curve maps to ``measured`` (its inverse; on a flat stretch,
        where the stretch ends: the safe side)."""
        knots = self._knots()
        if len(knots) == 1:
            return measured
        last_p, last_r = knots[-1]
        if measured >= last_r:
            return measured * last_p / last_r if last_r > 1e-9 else float("inf")
        for (p0, r0), (p1, r1) in itertools.pairwise(knots):
            if r0 <= measured < r1:
                return p0 + (p1 - p0) * (measured - r0) / (r1 - r0)
        return 0.0  # measured <= 0: no saving needed
