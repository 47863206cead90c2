"""From budgets to kept index lists: FOAD paper mode, exact counts, global targets, rounding.

Scoring (similarities, norms, ranks) happens before; this module only decides which indices
survive in each group, by the rules of docs/method.md sections 3 and 5.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from torch import Tensor

from foadx.errors import BudgetError
from foadx.foad import (
    TargetUnreachable,
    add_back,
    greedy_select,
    kept_count_for_ratio,
    round_up_count,
    search_global,
    select_k,
)
from foadx.pruning.criteria import keep_top_k


@dataclass(frozen=True)
class Budget:
    """What the user asked for; exactly one of the four budget kinds, or none (paper mode)."""

    t: int | None = None
    s: float | None = None
    ratio: float | None = None
    ratios: Mapping[str, float] | None = None
    flops_target: float | None = None
    params_target: float | None = None
    round_to: int = 1
    widths: Mapping[str, int] | None = None  # exact kept counts in offsets (a latency plan's choice)

    def validate(self, criterion: str) -> None:
        chosen = [
            name
            for name, value in (
                ("ratio", self.ratio),
                ("ratios", self.ratios),
                ("flops_target", self.flops_target),
                ("params_target", self.params_target),
                ("widths", self.widths),
            )
            if value is not None
        ]
        if len(chosen) > 1:
            raise BudgetError(f"give one budget, not {' and '.join(chosen)}", parameters=tuple(chosen))
        if self.ratios is not None and not self.ratios:
            raise BudgetError("ratios names no group: nothing would be pruned", parameters=("ratios",))
        if self.round_to < 1:
            raise BudgetError(f"round_to must be >= 1, got {self.round_to}", parameters=("round_to",))
        if self.t is not None and self.t < 1:
            raise BudgetError(f"t must be >= 1, got {self.t}", parameters=("t",))
        if self.s is not None and not 0.0 <= self.s <= 1.0:
            raise BudgetError(f"s must be in [0, 1] (S is in (0, 1]), got {self.s}", parameters=("s",))
        for label, value in (
            ("ratio", self.ratio),
            ("flops_target", self.flops_target),
            ("params_target", self.params_target),
        ):
            if value is not None and not 0.0 < value < 1.0:
                raise BudgetError(f"{label} must be in (0, 1), got {value}", parameters=(label,))
        for name, value in (self.ratios or {}).items():
            if not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
                raise BudgetError(f"ratio for group {name!r} must be in (0, 1), got {value!r}")
        if criterion != "foad" and not chosen:
            raise BudgetError(
                f"criterion {criterion} needs a budget: ratio, ratios, flops_target, params_target, widths or "
                "a latency target"
            )

    @property
    def target(self) -> tuple[str, float] | None:
        if self.flops_target is not None:
            return "macs", self.flops_target
        if self.params_target is not None:
            return "params", self.params_target
        return None


@dataclass(frozen=True)
class Selection:
    kept: dict[str, list[int]]
    t: int | None
    s: float | None


KeptSets = dict[str, list[int]]


def round_kept(kept: KeptSets, channels: Mapping[str, int], steps: Mapping[str, int],
               grow: Callable[[str, list[int], int], list[int]]) -> KeptSets:
    """Raises each kept count to min(C, ceil(k / r) * r), r the group's step (``round_to``, or
    its offset equivalent for a grouped conv), with the criterion's own add-back."""
    return {
        name: indices if steps[name] == 1 else grow(name, indices, round_up_count(len(indices), channels[name], steps[name]))
        for name, indices in kept.items()
    }


def select_foad(
    similarities: Mapping[str, Tensor],
    budget: Budget,
    reduction_of: Callable[[str, KeptSets], float],
    steps: Mapping[str, int],
) -> Selection:
    """FOAD selection for every group, by the budget's kind; ``steps``: each group's rounding
    multiple (``round_to``, or its offset equivalent for a grouped conv)."""
    channels = {name: S.shape[0] for name, S in similarities.items()}

    def grow(name: str, indices: list[int], k: int) -> list[int]:
        return add_back(similarities[name], indices, k)

    if budget.target is not None:
        metric, target = budget.target

        def rounded_reduction(kept: KeptSets) -> float:
            return reduction_of(metric, round_kept(kept, channels, steps, grow))

        try:
            choice = search_global(similarities, rounded_reduction, target, budget.t)
        except TargetUnreachable as error:
            raise BudgetError(f"{metric} target unreachable: {error}") from error
        return Selection(round_kept(choice.kept, channels, steps, grow), choice.t, choice.s)
    if budget.widths is not None:
        return Selection({name: select_k(S, budget.widths.get(name, S.shape[0])) for name, S in similarities.items()},
                         None, None)
    if budget.ratio is not None or budget.ratios is not None:
        kept = {}
        for name, S in similarities.items():
            ratio = budget.ratio if budget.ratios is None else budget.ratios.get(name)
            kept[name] = list(range(channels[name])) if ratio is None else select_k(S, kept_count_for_ratio(channels[name], ratio))
        return Selection(round_kept(kept, channels, steps, grow), None, None)
    t = 2 if budget.t is None else budget.t
    s = 0.5 if budget.s is None else budget.s
    kept = {name: greedy_select(S, t, s) for name, S in similarities.items()}
    return Selection(round_kept(kept, channels, steps, grow), t, s)


def select_by_scores(
    scores: Mapping[str, Tensor],
    budget: Budget,
    reduction_of: Callable[[str, KeptSets], float],
    steps: Mapping[str, int],
) -> Selection:
    """Baseline criteria: keep the top-k scores per group; a global target uses one ratio for all.

    The ratio for a global target is the smallest uniform removal ratio (found by 40 halvings)
    that meets it after rounding — the baseline's fair counterpart of FOAD's single (t, s).
    """
    channels = {name: values.shape[0] for name, values in scores.items()}

    def grow(name: str, indices: list[int], k: int) -> list[int]:
        return keep_top_k(scores[name], k)

    def at_ratio(ratio_of: Callable[[str], float | None]) -> KeptSets:
        kept = {}
        for name, values in scores.items():
            ratio = ratio_of(name)
            k = channels[name] if ratio is None else kept_count_for_ratio(channels[name], ratio)
            kept[name] = keep_top_k(values, k)
        return round_kept(kept, channels, steps, grow)

    if budget.target is not None:
        metric, target = budget.target
        if reduction_of(metric, at_ratio(lambda _: 0.999)) < target:
            raise BudgetError(f"{metric} target {target:.1%} is out of reach of the prunable groups")
        low, high = 1e-9, 0.999
        for _ in range(40):
            middle = (low + high) / 2
            if reduction_of(metric, at_ratio(lambda _: middle)) >= target:
                high = middle
            else:
                low = middle
        return Selection(at_ratio(lambda _: high), None, None)
    if budget.widths is not None:
        return Selection({name: keep_top_k(values, budget.widths.get(name, channels[name]))
                          for name, values in scores.items()}, None, None)
    if budget.ratios is not None:
        return Selection(at_ratio(budget.ratios.get), None, None)
    return Selection(at_ratio(lambda _: budget.ratio), None, None)
