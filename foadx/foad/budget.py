"""Global FLOPs/params targets for FOAD in paper mode (docs/method.md section 5).

One (t, s) for every group: t is the user's, else the smallest t >= 2 that reaches the target at
s = 0 (up to 8); s is the largest value in [0, 1] that still meets the target, by 40 halvings.
The target is checked by a caller-supplied function on the kept sets *as they would be built*
(after any rounding), so this module needs to know nothing about networks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from torch import Tensor

from foadx.foad.greedy import greedy_select

MAX_AUTO_T = 8
HALVINGS = 40

KeptSets = dict[str, list[int]]


@dataclass(frozen=True)
class GlobalChoice:
    """The (t, s) found for a global target (docs/method.md section 5): the greedy neighbour
    count t, the similarity threshold s in [0, 1], the kept channel indices per group, and the
    reduction achieved (a fraction of the cost, >= the target)."""

    t: int
    s: float
    kept: KeptSets
    reduction: float


class TargetUnreachable(ValueError):
    """No (t, s) reaches the target; ``suggested_t`` names a t that would, if any."""

    def __init__(self, message: str, suggested_t: int | None = None) -> None:
        super().__init__(message)
        self.suggested_t = suggested_t


def _select_all(similarities: Mapping[str, Tensor], t: int, s: float) -> KeptSets:
    return {name: greedy_select(S, t, s) for name, S in similarities.items()}


def search_global(similarities: Mapping[str, Tensor], reduction_of: Callable[[KeptSets], float], target: float,
                  t: int | None = None) -> GlobalChoice:
    """Finds (t, s) whose kept sets reduce the cost by at least ``target`` (a fraction).

    FOAD's greedy selection (Shi et al., JCRD 2024; paper mode, docs/method.md section 3) with
    one (t, s) for every group; the search is foadx's (section 5).

    Args:
        similarities: group name -> its (C, C) channel similarity matrix S.
        reduction_of: kept sets -> the fraction of FLOPs or parameters they remove.
        target: the fraction to remove, in (0, 1).
        t: the greedy neighbour count; None tries 2..8 at s = 0.

    Raises:
        ValueError: ``target`` outside (0, 1) or ``t`` < 1.
        TargetUnreachable: no t <= 8 (or the given t) reaches the target at s = 0; carries a
            ``suggested_t`` when a larger t would.
    """
    if not 0.0 < target < 1.0:
        raise ValueError(f"target must be in (0, 1), got {target}")

    def meets(t_value: int, s_value: float) -> tuple[bool, KeptSets, float]:
        kept = _select_all(similarities, t_value, s_value)
        achieved = reduction_of(kept)
        return achieved >= target, kept, achieved

    if t is None:
        for candidate in range(2, MAX_AUTO_T + 1):
            if meets(candidate, 0.0)[0]:
                t = candidate
                break
        else:
            raise TargetUnreachable(f"no t <= {MAX_AUTO_T} reaches a {target:.1%} reduction at s = 0 "
                                    f"(t = {MAX_AUTO_T} gives {meets(MAX_AUTO_T, 0.0)[2]:.1%})")
    elif t < 1:
        raise ValueError(f"t must be >= 1, got {t}")
    else:
        ok, _, achieved = meets(t, 0.0)
        if not ok:
            suggestion = next((c for c in range(t + 1, max(t, MAX_AUTO_T) + 1) if meets(c, 0.0)[0]), None)
            hint = f"; t = {suggestion} would" if suggestion else f"; no t <= {MAX_AUTO_T} would"
            raise TargetUnreachable(
                f"t = {t} reaches at most a {achieved:.1%} reduction, below the {target:.1%} target{hint}",
                suggestion,
            )

    ok, kept, achieved = meets(t, 1.0)
    if ok:
        return GlobalChoice(t, 1.0, kept, achieved)
    low, high = 0.0, 1.0
    for _ in range(HALVINGS):
        middle = (low + high) / 2
        if meets(t, middle)[0]:
            low = middle
        else:
            high = middle
    _, kept, achieved = meets(t, low)
    return GlobalChoice(t, low, kept, achieved)
