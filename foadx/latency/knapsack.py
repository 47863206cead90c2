"""The multiple-choice knapsack: one width per group, the most value within a latency budget.

    maximise  sum_g v_g(w_g)   subject to   sum_g c_g(w_g) <= B,   w_g in W_g

Solved exactly by dynamic programming over the budget in integer steps (costs rounded *up* to
the step, so a solution never exceeds B): best[b] is the most value of the groups seen so far
within cost b; adding group g, best'[b] = max over w of best[b - c_g(w)] + v_g(w). O(G x B/step
x |W|) with numpy over b.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from foadx.errors import BudgetError


@dataclass(frozen=True)
class Choice:
    width: int
    value: float
    cost_ms: float


def solve(options: Mapping[str, Sequence[Choice]], budget_ms: float, step_ms: float = 0.001) -> dict[str, Choice]:
    """The best choice per group within ``budget_ms``; ``BudgetError`` when even the cheapest
    choices exceed it."""
    names = list(options)
    cheapest = sum(min(choice.cost_ms for choice in options[name]) for name in names)
    if cheapest > budget_ms + 1e-12:
        raise BudgetError(f"the cheapest widths cost {cheapest:.3f} ms, over the budget of {budget_ms:.3f} ms")
    bins = math.floor(budget_ms / step_ms + 1e-9) + 1
    best = np.zeros(bins)
    picks = []
    for name in names:
        costs = [max(0, math.ceil(choice.cost_ms / step_ms - 1e-9)) for choice in options[name]]
        candidates = np.full((len(costs), bins), -np.inf)
        for index, (cost, choice) in enumerate(zip(costs, options[name])):
            if cost < bins:
                candidates[index, cost:] = best[: bins - cost] + choice.value
        picks.append(candidates.argmax(axis=0))
        best = candidates.max(axis=0)
    if not np.isfinite(best[-1]):
        raise BudgetError(f"no combination of widths fits {budget_ms:.3f} ms at {step_ms} ms resolution")
    chosen, remaining = {}, bins - 1
    for name, pick in zip(reversed(names), reversed(picks)):
        choice = options[name][int(pick[remaining])]
        chosen[name] = choice
        remaining -= max(0, math.ceil(choice.cost_ms / step_ms - 1e-9))
    return {name: chosen[name] for name in names}
