"""Planning widths for a latency target (docs/latency.md): FOAD decides which channels stay at
any width, the table decides what each width costs, the knapsack decides how many per group.

Values (what each width costs the network's output) come from ``values.py``.

Cost of group g at width w, its neighbours at their current widths: the table's latency of every
unit whose output width g sets (its producers and depthwise convs) plus every unit whose input g
sets and whose output no chosen group sets. A unit set by two groups is charged to its output
group at the input group's current width; so costs change with the neighbours, and the widths are
re-solved with updated neighbours until they stop changing.

    predicted(w) = base + fixed + sum_g cost_g(w_g | w),  base = network_ms - sum_units L(full)

and the saving this predicts mapped onto the measured one by ``SavingsCurve``, fitted to whole
networks measured beside the unpruned one (the table's check points, then every measured plan).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from foadx.errors import BudgetError
from foadx.latency.curve import SavingsCurve
from foadx.latency.knapsack import Choice, solve
from foadx.latency.table import LatencyTable, MissingLatencyError
from foadx.latency.units import Unit, UnitKey
from foadx.pruning.groups import ChannelGroup

MAX_NEIGHBOUR_ROUNDS = 8
Measure = Callable[[list[UnitKey]], dict[UnitKey, float]]


def legal_widths(group: ChannelGroup, round_to: int) -> list[int]:
    """Multiples of lcm(round_to, the group's conv groups), up to and including its width."""
    step = math.lcm(round_to, group.channel_groups)
    widths = list(range(step, group.channels, step))
    return widths + [group.channels]


def candidate_widths(group: ChannelGroup, round_to: int, min_keep: float = 0.0) -> list[int]:
    """The legal widths that keep at least ``min_keep`` of the group's channels (the full width
    when none does): a floor against the knapsack emptying a group whose channels look alike."""
    widths = legal_widths(group, round_to)
    return [width for width in widths if width >= min_keep * group.channels] or widths[-1:]


@dataclass
class WidthPlan:
    widths: dict[str, int]
    predicted_ms: float
    neighbour_rounds: int


class Planner:
    def __init__(self, table: LatencyTable, units: list[Unit], groups: list[ChannelGroup],
                 values: Mapping[str, Mapping[int, float]], measure: Measure | None = None) -> None:
        self.table, self.units, self.measure = table, units, measure
        self.groups = {group.name: group for group in groups}
        self.values = values
        self.charged = {name: [u for u in units if u.out_group == name or (u.in_group == name and u.out_group not in self.groups)]
                        for name in self.groups}
        charged = {u.name for units_of in self.charged.values() for u in units_of}
        self.fixed = [u for u in units if u.name not in charged]
        self.base_ms = table.network_ms - sum(self._latency(u.key) for u in units)
        self.curve = SavingsCurve((check["predicted_saving"], check["measured_saving"]) for check in table.checks)

    def _latency(self, key: UnitKey) -> float:
        try:
            return self.table.lookup(key)
        except MissingLatencyError:
            if self.measure is None:
                raise
            self._fill([key])
            return self.table.lookup(key)

    def _fill(self, keys: list[UnitKey]) -> None:
        """Measures the keys the table lacks, all at once (one interleaved batch)."""
        missing = [key for key in set(keys) if key not in self.table]
        if missing and self.measure is not None:
            for key, ms in self.measure(missing).items():
                self.table.add(key, ms)

    def cost(self, name: str, width: int, widths: Mapping[str, int]) -> float:
        """The table's cost of ``name`` at ``width``, its neighbours at ``widths``."""
        at = {**widths, name: width}
        return sum(self._latency(unit.at(at)) for unit in self.charged[name])

    def table_ms(self, widths: Mapping[str, int]) -> float:
        """The network's latency as the table's units add up."""
        return (self.base_ms + sum(self._latency(unit.at(widths)) for unit in self.fixed)
                + sum(self.cost(name, widths[name], widths) for name in self.groups))

    def relative_saving(self, widths: Mapping[str, int]) -> float:
        """The table's own saving of ``widths``, as a fraction of the unpruned network."""
        return 1.0 - self.table_ms(widths) / self.table.network_ms

    def predict(self, widths: Mapping[str, int]) -> float:
        """The network's latency: the table's saving, as the measured networks say it comes out."""
        return self.table.network_ms * (1.0 - self.curve.measured(self.relative_saving(widths)))

    def observe(self, widths: Mapping[str, int], measured_ms: float, unpruned_ms: float) -> None:
        """Adds a network measured beside the unpruned one to the savings curve."""
        self.curve.add(self.relative_saving(widths), 1.0 - measured_ms / unpruned_ms)

    def table_budget(self, target_ms: float) -> float:
        """The table latency whose saving the curve says measures as ``target_ms``."""
        return self.table.network_ms * (1.0 - self.curve.predicted_for(1.0 - target_ms / self.table.network_ms))

    def plan(self, target_ms: float, candidates: Mapping[str, list[int]]) -> WidthPlan:
        """The most valuable widths predicted to run within ``target_ms`` (in the table's
        machine state): a knapsack on the table's costs, its budget the table latency the savings
        curve maps onto ``target_ms``, re-solved with the neighbours' new widths until the widths
        stop changing. Where they cycle instead, the most valuable of the visited width sets the
        table puts within the budget is taken (each solve only knew its neighbours' old widths)."""
        table_target = self.table_budget(target_ms)
        widths = {name: group.channels for name, group in self.groups.items()}
        visited = []
        for rounds in range(1, MAX_NEIGHBOUR_ROUNDS + 1):
            new = self._solve(widths, table_target, target_ms, candidates)
            if new == widths:
                break
            widths = new
            visited.append(widths)
        else:
            widths = self._best_visited(visited, table_target)
        return WidthPlan(widths, self.predict(widths), rounds)

    def _solve(self, widths: Mapping[str, int], table_target: float, target_ms: float,
               candidates: Mapping[str, list[int]]) -> dict[str, int]:
        """One knapsack, each group's costs with its neighbours at ``widths``."""
        self._fill([unit.at({**widths, name: w}) for name in self.groups for w in candidates[name]
                    for unit in self.charged[name]])
        fixed_ms = sum(self._latency(unit.at(widths)) for unit in self.fixed)
        options = {name: [Choice(w, self.values[name][w], self.cost(name, w, widths)) for w in candidates[name]]
                   for name in self.groups}
        try:
            chosen = solve(options, table_target - self.base_ms - fixed_ms)
        except BudgetError:
            table_fastest = self.base_ms + fixed_ms + sum(min(c.cost_ms for c in o) for o in options.values())
            fastest = self.table.network_ms * (1.0 - self.curve.measured(1.0 - table_fastest / self.table.network_ms))
            raise BudgetError(f"the latency target {target_ms:.3f} ms is out of reach: the narrowest legal widths "
                              f"are predicted at {fastest:.3f} ms") from None
        return {name: choice.width for name, choice in chosen.items()}

    def _best_visited(self, visited: list[dict[str, int]], table_target: float) -> dict[str, int]:
        """The most valuable width set within ``table_target``, or the fastest if none is."""
        within = [widths for widths in visited if self.table_ms(widths) <= table_target]
        if not within:
            return min(visited, key=self.table_ms)
        return max(within, key=lambda widths: sum(self.values[name][w] for name, w in widths.items()))


def full_widths(groups: list[ChannelGroup]) -> dict[str, int]:
    return {group.name: group.channels for group in groups}


def unit_keys_to_profile(units: list[Unit], groups: list[ChannelGroup], round_to: int) -> list[UnitKey]:
    """Every unit at full width, and every unit a group sets at each of its legal widths (the
    other groups at full width)."""
    full = full_widths(groups)
    keys = [unit.key for unit in units]
    for group in groups:
        for width in legal_widths(group, round_to):
            keys += [unit.at({**full, group.name: width}) for unit in units
                     if group.name in (unit.in_group, unit.out_group)]
    return list(dict.fromkeys(keys))

