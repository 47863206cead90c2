"""The multiple-choice knapsack: one width per group, the most value within a latency budget.

    maximise  sum_g v_g(w_g)   subject to   sum_g c_g(w_g) <= B,   w_g in W_g

Solved by dynamic programming over the Pareto frontier of partial solutions (docs/latency.md,
section 4): after each group, the frontier holds every (cost, value) of the groups seen so far
that no other partial solution beats on both (cost within B, value higher at no more cost).
Costs are kept exact, never rounded, so a solution never exceeds B and the work does not depend
on the latencies' magnitude: multiplying every cost and B by 1000 gives the same frontier.

While the frontier holds at most ``max_states`` points the solution is the exact optimum. Where
it would hold more, it is thinned: the budget is cut into ``max_states`` buckets of width
d = B / max_states and each bucket keeps its most valuable point. Each thinning moves a kept
point at most d in cost, so after G groups the solution is still within B and worth at least
the exact optimum within B - G x d (G x 1/max_states of the budget: 30 groups at the default
16384 states, 0.18 %). Time O(G x S x |W| log(S x |W|)), memory O(G x S) for S <= max_states.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from foadx.errors import BadInputError, BudgetError
from foadx.latency.targets import format_ms

MAX_STATES = 16384  # frontier points kept per group; beyond, thinned to buckets of B / MAX_STATES


@dataclass(frozen=True)
class Choice:
    """One width of a group: its value (higher is better) and its cost in milliseconds."""

    width: int
    value: float
    cost_ms: float


def solve(options: Mapping[str, Sequence[Choice]], budget_ms: float,
          max_states: int = MAX_STATES) -> dict[str, Choice]:
    """The most valuable choice per group whose costs sum to at most ``budget_ms``.

    Args:
        options: group name -> its choices (at least one each); costs in ms, negative ones
            counted as 0.
        budget_ms: the budget B, finite.
        max_states: the frontier's bound (exact below it; see the module for the bound above).

    Returns:
        group name -> the chosen ``Choice``, in the order of ``options``.

    Raises:
        BudgetError: even the cheapest choices exceed ``budget_ms``.
        BadInputError: a group without choices, or a cost, value or budget that is not finite.
    """
    names = list(options)
    _check(options, budget_ms)
    cheapest = sum(min(_cost(choice) for choice in options[name]) for name in names)
    if cheapest > budget_ms + _slack(budget_ms):
        raise BudgetError(f"the cheapest widths cost {format_ms(cheapest)} ms, over the budget of {format_ms(budget_ms)} ms")
    limit = budget_ms + _slack(budget_ms)
    costs, values = np.zeros(1), np.zeros(1)
    steps = []  # per group: for each frontier point, (index of its parent point, index of its choice)
    for name in names:
        choice_costs = np.array([_cost(choice) for choice in options[name]])
        choice_values = np.array([float(choice.value) for choice in options[name]])
        all_costs = (costs[:, None] + choice_costs[None, :]).ravel()
        all_values = (values[:, None] + choice_values[None, :]).ravel()
        keep = _frontier(all_costs, all_values, limit, budget_ms, max_states)
        parents, picks = np.divmod(keep, len(choice_costs))
        steps.append((parents, picks))
        costs, values = all_costs[keep], all_values[keep]
    point = int(np.argmax(values))
    chosen = {}
    for name, (parents, picks) in zip(reversed(names), reversed(steps)):
        chosen[name] = options[name][int(picks[point])]
        point = int(parents[point])
    return {name: chosen[name] for name in names}


def _frontier(costs: np.ndarray, values: np.ndarray, limit: float, budget_ms: float, max_states: int) -> np.ndarray:
    """Indices of the points within ``limit`` that no cheaper-or-equal point beats in value,
    ordered by cost; thinned to one per bucket of ``budget_ms / max_states`` beyond ``max_states``."""
    within = np.flatnonzero(costs <= limit)
    order = within[np.lexsort((-values[within], costs[within]))]  # by cost, the best value first on ties
    best_before = np.maximum.accumulate(values[order])
    improves = np.empty(len(order), dtype=bool)
    improves[0] = True
    improves[1:] = values[order][1:] > best_before[:-1]
    kept = order[improves]
    if len(kept) > max_states and budget_ms > 0:
        buckets = np.floor(costs[kept] / (budget_ms / max_states)).astype(np.int64)
        last_of_bucket = np.append(buckets[1:] != buckets[:-1], True)  # values rise with cost: the last is best
        kept = kept[last_of_bucket]
    return kept


def _cost(choice: Choice) -> float:
    return max(0.0, float(choice.cost_ms))


def _slack(budget_ms: float) -> float:
    """Rounding room when comparing a sum of costs with the budget."""
    return 1e-12 * max(1.0, abs(budget_ms))


def _check(options: Mapping[str, Sequence[Choice]], budget_ms: float) -> None:
    if not math.isfinite(budget_ms):
        raise BadInputError(f"the latency budget must be a finite number of ms, got {budget_ms}")
    for name, choices in options.items():
        if not choices:
            raise BadInputError(f"group {name} has no widths to choose from")
        for choice in choices:
            if not (math.isfinite(choice.cost_ms) and math.isfinite(choice.value)):
                raise BadInputError(f"group {name} width {choice.width}: cost {choice.cost_ms} ms and value "
                                    f"{choice.value} must be finite")


MAX_EXACT_STATES = 1024  # Pareto points kept exactly in several dimensions; beyond, Lagrangian
LAGRANGE_STEPS = 24  # bisection steps on the multiplier once a feasible one is found


@dataclass(frozen=True)
class MultiChoice:
    """One width of a group: its value and its cost in ms on each target."""

    width: int
    value: float
    costs: tuple[float, ...]


def solve_multi(options: Mapping[str, Sequence[MultiChoice]], budgets: Sequence[float],
                max_states: int = MAX_EXACT_STATES) -> tuple[dict[str, MultiChoice], bool]:
    """The most valuable choice per group whose costs stay within every budget: a
    multi-dimensional multiple-choice knapsack (one cost dimension per latency target).

    Exact while the Pareto frontier (points no other beats on value and every cost) holds at
    most ``max_states`` points. Beyond, a Lagrangian relaxation: the costs beyond the first
    enter the value as ``- lam * sum_d c_d / B_d`` and the one-dimensional knapsack on the first
    cost is solved for growing ``lam`` until every budget holds, then ``lam`` is bisected down
    to the smallest such one; the answer is feasible but may fall short of the optimum.

    Returns:
        group name -> the chosen ``MultiChoice``, and whether the answer is exact.

    Raises:
        BudgetError: no choice found within every budget (for the relaxation: none at any ``lam``).
        BadInputError: a group without choices, a cost vector of another length, or a cost,
            value or budget that is not finite.
    """
    _check_multi(options, budgets)
    if len(budgets) == 1:
        single = {name: [Choice(index, c.value, c.costs[0]) for index, c in enumerate(choices)]
                  for name, choices in options.items()}
        return {name: options[name][pick.width] for name, pick in solve(single, budgets[0]).items()}, True
    try:
        return _exact_multi(options, budgets, max_states), True
    except _FrontierTooLarge:
        return _lagrangian(options, budgets), False


class _FrontierTooLarge(Exception):
    pass


def _exact_multi(options: Mapping[str, Sequence[MultiChoice]], budgets: Sequence[float],
                 max_states: int) -> dict[str, MultiChoice]:
    """Dynamic programming over the Pareto frontier in every cost dimension and the value."""
    limits = np.array([budget + _slack(budget) for budget in budgets])
    costs, values = np.zeros((1, len(budgets))), np.zeros(1)
    paths: list[tuple[int, ...]] = [()]
    for name in options:
        choices = options[name]
        choice_costs = np.array([[max(0.0, c) for c in choice.costs] for choice in choices])
        all_costs = (costs[:, None, :] + choice_costs[None, :, :]).reshape(-1, len(budgets))
        all_values = (values[:, None] + np.array([c.value for c in choices])[None, :]).ravel()
        keep = _pareto(all_costs, all_values, limits, max_states)
        if len(keep) == 0:
            raise BudgetError(f"no widths fit every budget ({', '.join(format_ms(b) for b in budgets)} ms)")
        parents, picks = np.divmod(keep, len(choices))
        paths = [paths[int(parent)] + (int(pick),) for parent, pick in zip(parents, picks)]
        costs, values = all_costs[keep], all_values[keep]
    best = paths[int(np.argmax(values))]
    return {name: options[name][pick] for name, pick in zip(options, best)}


def _pareto(costs: np.ndarray, values: np.ndarray, limits: np.ndarray, max_states: int) -> np.ndarray:
    """Indices of the points within ``limits`` that no other point beats (value at least as
    high, every cost at most as high)."""
    within = np.flatnonzero(np.all(costs <= limits, axis=1))
    order = within[np.lexsort((*(costs[within].T[::-1]), -values[within]))]  # best value first
    kept: list[int] = []
    for index in order:
        if kept and np.any(np.all(costs[kept] <= costs[index], axis=1)):
            continue
        kept.append(int(index))
        if len(kept) > max_states:
            raise _FrontierTooLarge
    return np.array(kept, dtype=np.int64)


def _lagrangian(options: Mapping[str, Sequence[MultiChoice]], budgets: Sequence[float]) -> dict[str, MultiChoice]:
    """The relaxation's best answer within every budget (see ``solve_multi``)."""
    spread = sum(max(c.value for c in cs) - min(c.value for c in cs) for cs in options.values()) or 1.0

    def attempt(lam: float) -> dict[str, MultiChoice] | None:
        penalised = {name: [Choice(index, c.value - lam * sum(max(0.0, x) / max(b, 1e-12)
                                                              for x, b in zip(c.costs[1:], budgets[1:])), c.costs[0])
                            for index, c in enumerate(choices)] for name, choices in options.items()}
        chosen = {name: options[name][pick.width] for name, pick in solve(penalised, budgets[0]).items()}
        fits = all(sum(max(0.0, c.costs[d]) for c in chosen.values()) <= budgets[d] + _slack(budgets[d])
                   for d in range(1, len(budgets)))
        return chosen if fits else None

    found = attempt(0.0)
    if found is not None:
        return found
    low, high = 0.0, spread / 1024
    while (found := attempt(high)) is None:
        low, high = high, high * 4
        if high > spread * 1e12:
            raise BudgetError(f"no widths fit every budget ({', '.join(format_ms(b) for b in budgets)} ms)")
    for _ in range(LAGRANGE_STEPS):
        middle = (low + high) / 2
        answer = attempt(middle)
        low, high, found = (low, middle, answer) if answer is not None else (middle, high, found)
    return found


def _check_multi(options: Mapping[str, Sequence[MultiChoice]], budgets: Sequence[float]) -> None:
    if not budgets or not all(math.isfinite(budget) for budget in budgets):
        raise BadInputError(f"the latency budgets must be finite numbers of ms, got {list(budgets)}")
    for name, choices in options.items():
        if not choices:
            raise BadInputError(f"group {name} has no widths to choose from")
        for choice in choices:
            if len(choice.costs) != len(budgets) or not all(map(math.isfinite, (*choice.costs, choice.value))):
                raise BadInputError(f"group {name} width {choice.width}: {len(budgets)} finite costs and a finite "
                                    f"value are needed, got {choice.costs} and {choice.value}")
