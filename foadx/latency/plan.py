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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from foadx.errors import BudgetError
from foadx.latency.curve import SavingsCurve
from foadx.latency.knapsack import MultiChoice, solve_multi
from foadx.latency.table import LatencyTable, MissingLatencyError
from foadx.latency.targets import format_ms
from foadx.latency.units import Unit, UnitKey, key_macs
from foadx.pruning.groups import ChannelGroup

MAX_NEIGHBOUR_ROUNDS = 8
Measure = Callable[[list[UnitKey]], dict[UnitKey, float]]


def legal_widths(group: ChannelGroup, round_to: int) -> list[int]:
    """Multiples of lcm(round_to, the group's conv groups), up to and including its width."""
    step = math.lcm(round_to, group.channel_groups)
    widths = list(range(step, group.channels, step))
    return widths + [group.channels]


def uniform_widths(groups: list[ChannelGroup], fraction: float, round_to: int) -> dict[str, int]:
    """Every group at the legal width nearest ``fraction`` of its channels."""
    return {group.name: min(legal_widths(group, round_to), key=lambda width: abs(width - fraction * group.channels))
            for group in groups}


def candidate_widths(group: ChannelGroup, round_to: int, min_keep: float = 0.0) -> list[int]:
    """The legal widths that keep at least ``min_keep`` of the group's channels (the full width
    when none does): a floor against the knapsack emptying a group whose channels look alike."""
    widths = legal_widths(group, round_to)
    return [width for width in widths if width >= min_keep * group.channels] or widths[-1:]


class OutOfReachError(BudgetError):
    """No widths the knapsack may choose fit every target; ``fastest`` names the predicted
    latency of the narrowest allowed widths on each target's backend (CLI exit code 3)."""

    def __init__(self, message: str, fastest: str) -> None:
        super().__init__(message)
        self.fastest = fastest


@dataclass
class WidthPlan:
    """Planned widths, the predicted latency (ms) on each target in order (``predicted_ms`` the
    first's), the neighbour re-solves it took and whether every knapsack was solved exactly."""

    widths: dict[str, int]
    predicted_ms: float
    neighbour_rounds: int
    predicted: tuple[float, ...] = ()
    exact: bool = True


class Planner:
    """One table's view of a width setting: the cost of each group's widths, the predicted
    latency, and the savings curve that measured networks bend. A unit-mode table charges units
    (above); a network-mode table charges each group its own in-network saving,
    ``cost_g(w) = T_full (s_g(narrowest) - s_g(w))`` with ``base = T_full (1 - sum_g s_g(narrowest))``,
    NetAdapt's additive model, plus, for every unit whose input one group sets and whose output
    another sets, what adding their savings counts twice: narrowing either side alone saves its
    share m_u of the network in proportion, both at once save ``1 - a b``, not ``2 - a - b``, so
    ``T_full m_u (1 - a)(1 - b)`` is charged back to the output group (a, b the kept fractions,
    m_u the unit's share of the units' MACs), at most either group's own measured saving."""

    def __init__(self, table: LatencyTable, units: list[Unit], groups: list[ChannelGroup],
                 values: Mapping[str, Mapping[int, float]], measure: Measure | None = None) -> None:
        self.table, self.units, self.measure = table, units, measure
        self.groups = {group.name: group for group in groups}
        self.values = values
        self.network = table.mode == "network"
        if self.network:
            self.charged, self.fixed = {name: [] for name in self.groups}, []
            self.most = {name: table.group_saving(name, 1) for name in self.groups}
            self.base_ms = table.network_ms * (1.0 - sum(self.most.values()))
            self.joint = joint_units(units, self.groups)
        else:
            self.charged = {name: [u for u in units if u.out_group == name
                                   or (u.in_group == name and u.out_group not in self.groups)] for name in self.groups}
            charged = {u.name for units_of in self.charged.values() for u in units_of}
            self.fixed = [u for u in units if u.name not in charged]
            self.base_ms = table.network_ms - sum(self._latency(u.key) for u in units)
        self.curve = SavingsCurve(self._check_points())

    def _check_points(self) -> list[tuple[float, float]]:
        """The table's whole-network checks as (predicted, measured) savings. A network-mode table
        profiled on these same groups has each check's prediction recomputed from its uniform
        widths: tables written before the overlap term hold the plain additive sum."""
        recompute = self.network and set(self.table.network_savings) == set(self.groups)
        groups = list(self.groups.values())
        return [(self.relative_saving(uniform_widths(groups, check["fraction"], self.table.round_to))
                 if recompute else check["predicted_saving"], check["measured_saving"]) for check in self.table.checks]

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
        if self.network:
            saving = self.table.group_saving(name, width)
            counted_twice = sum(self._overlap(unit, share, widths, width, saving) for unit, share in self.joint[name])
            return self.table.network_ms * (self.most[name] - saving + counted_twice)
        at = {**widths, name: width}
        return sum(self._latency(unit.at(at)) for unit in self.charged[name])

    def _overlap(self, unit: Unit, share: float, widths: Mapping[str, int], width: int, saving: float) -> float:
        """The saving of ``unit`` that both its input group's and its output group's in-network
        savings hold: its MACs share x the fraction of its input channels removed x the fraction of
        its output channels removed, at most either group's own saving (it is part of both)."""
        source = self.groups[unit.in_group]
        kept_in = widths.get(source.name, source.channels)
        removed_in = (source.channels - kept_in) / unit.key.in_channels  # a concat's branch spans part of the input
        estimate = share * removed_in * (1 - width / unit.key.out_channels)
        return max(0.0, min(estimate, saving, self.table.group_saving(source.name, kept_in)))  # noise: never < 0

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

    def fastest(self, candidates: Mapping[str, list[int]]) -> float:
        """The predicted latency (ms) with every group at its narrowest candidate width: the
        fastest plan the table knows (a narrower unit is never slower)."""
        return self.predict({name: min(candidates[name]) for name in self.groups})

    def plan(self, target_ms: float, candidates: Mapping[str, list[int]]) -> WidthPlan:
        """The most valuable widths predicted to run within ``target_ms`` (in the table's
        machine state): ``plan_jointly`` with this one target."""
        return plan_jointly([self], [target_ms], candidates)

    def budget_left(self, widths: Mapping[str, int], table_target: float) -> float:
        """What the groups' costs may add up to: the table budget less the base and the units
        no group sets, at ``widths``."""
        return table_target - self.base_ms - sum(self._latency(unit.at(widths)) for unit in self.fixed)

    def fill_candidates(self, widths: Mapping[str, int], candidates: Mapping[str, list[int]]) -> None:
        """Measures, where it may, the keys the candidates' costs need and the table lacks."""
        self._fill([unit.at({**widths, name: w}) for name in self.groups for w in candidates[name]
                    for unit in self.charged[name]])


def joint_units(units: list[Unit], groups: Mapping[str, ChannelGroup]) -> dict[str, list[tuple[Unit, float]]]:
    """Per group, the units whose output it sets and whose input another of ``groups`` sets, each
    with its share of all the units' MACs at full width (``key_macs``)."""
    total = sum(key_macs(unit.key) for unit in units) or 1
    joint: dict[str, list[tuple[Unit, float]]] = {name: [] for name in groups}
    for unit in units:
        if unit.out_group in groups and unit.in_group in groups and unit.in_group != unit.out_group and not unit.depthwise:
            joint[unit.out_group].append((unit, key_macs(unit.key) / total))
    return joint


def plan_jointly(planners: Sequence[Planner], targets_ms: Sequence[float],
                 candidates: Mapping[str, list[int]]) -> WidthPlan:
    """The most valuable widths every planner predicts within its target (ms, in its table's
    machine state): a knapsack with one cost per target (``solve_multi``), each budget the table
    latency its savings curve maps onto the target, re-solved with the neighbours' new widths
    until the widths stop changing. Where they cycle instead, the most valuable visited width
    set within every budget is taken (each solve only knew its neighbours' old widths).

    Raises:
        OutOfReachError: no widths fit every target.
    """
    table_targets = [planner.table_budget(target) for planner, target in zip(planners, targets_ms)]
    widths = full_widths(list(planners[0].groups.values()))
    visited, exact = [], True
    for rounds in range(1, MAX_NEIGHBOUR_ROUNDS + 1):
        new, solved_exactly = _solve_jointly(planners, widths, table_targets, targets_ms, candidates)
        exact = exact and solved_exactly
        if new == widths:
            break
        widths = new
        visited.append(widths)
    else:
        widths = _best_visited(planners, visited, table_targets)
    predicted = tuple(planner.predict(widths) for planner in planners)
    return WidthPlan(widths, predicted[0], rounds, predicted, exact)


def _solve_jointly(planners: Sequence[Planner], widths: Mapping[str, int], table_targets: Sequence[float],
                   targets_ms: Sequence[float], candidates: Mapping[str, list[int]]) -> tuple[dict[str, int], bool]:
    """One knapsack, each group's costs on every target with its neighbours at ``widths``."""
    for planner in planners:
        planner.fill_candidates(widths, candidates)
    values = planners[0].values
    options = {name: [MultiChoice(w, values[name][w], tuple(p.cost(name, w, widths) for p in planners))
                      for w in candidates[name]] for name in planners[0].groups}
    try:
        chosen, exact = solve_multi(options, [p.budget_left(widths, t) for p, t in zip(planners, table_targets)])
    except BudgetError:
        fastest = ", ".join(f"{format_ms(p.fastest(candidates))} ms on {p.table.backend}" for p in planners)
        wanted = ", ".join(f"{format_ms(t)} ms" for t in targets_ms)
        raise OutOfReachError(f"the latency target {wanted} is out of reach: the narrowest widths allowed "
                              f"are predicted at {fastest}", fastest) from None
    return {name: choice.width for name, choice in chosen.items()}, exact


def _best_visited(planners: Sequence[Planner], visited: list[dict[str, int]],
                  table_targets: Sequence[float]) -> dict[str, int]:
    """The most valuable width set within every table budget, or the fastest on the first
    target if none is."""
    within = [widths for widths in visited
              if all(p.table_ms(widths) <= t for p, t in zip(planners, table_targets))]
    if not within:
        return min(visited, key=planners[0].table_ms)
    values = planners[0].values
    return max(within, key=lambda widths: sum(values[name][w] for name, w in widths.items()))


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

