"""Grouped convolutions: pruning by channel offsets, the same offsets in every conv group.

A grouped conv (``groups`` = g with 1 < g < C) computes each of its g groups from its own slice
of m = C / g input channels. Removing channels unevenly would leave widths that g does not
divide; so, as Torch-Pruning's own pruner does, foadx removes the same offsets j (0 <= j < m)
from every group: channel g*m + j stays exactly when offset j stays, and ``groups`` is kept.

Criteria see offsets, not channels (docs/method.md section 5): FOAD's similarity of offsets j and
j' is the mean over groups of S[g*m + j, g*m + j'] (still symmetric, in (0, 1]); a per-channel
score becomes the mean over groups of its offset's scores. Budgets apply to offsets (k' = max(1,
m - floor(R*m)), so k = g * k'), and a rounded width must be a multiple of lcm(g, round_to):
in offsets, a multiple of lcm(g, round_to) / g.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

from torch import Tensor

from foadx.pruning.groups import ChannelGroup

KeptSets = dict[str, list[int]]


class OffsetSpace:
    """Maps each chosen group's scores to its offsets and kept offsets back to channels."""

    def __init__(self, groups: list[ChannelGroup]) -> None:
        self.groups = {group.name: group.channel_groups for group in groups}
        self.offsets = {group.name: group.channels // group.channel_groups for group in groups}

    def to_offsets(self, values: Mapping[str, Tensor], by_similarity: bool) -> dict[str, Tensor]:
        return {name: self._fold(value, self.groups[name], by_similarity) for name, value in values.items()}

    @staticmethod
    def _fold(value: Tensor, groups: int, by_similarity: bool) -> Tensor:
        if groups == 1:
            return value
        offsets = value.shape[0] // groups
        if by_similarity:  # (C, C) -> mean over g of the g diagonal blocks, (m, m)
            blocks = value.reshape(groups, offsets, groups, offsets).diagonal(dim1=0, dim2=2)
            return blocks.mean(dim=-1)
        return value.reshape(groups, offsets).mean(dim=0)

    def to_channels(self, kept: Mapping[str, list[int]]) -> KeptSets:
        expanded = {}
        for name, offsets in kept.items():
            groups = self.groups[name]
            if groups == 1:
                expanded[name] = list(offsets)
                continue
            width = self.offsets[name]
            expanded[name] = sorted(g * width + j for g in range(groups) for j in offsets)
        return expanded

    def offset_counts(self, widths: Mapping[str, int]) -> dict[str, int]:
        """Kept channel counts -> kept offset counts (a width must be a multiple of its groups)."""
        return {name: width // self.groups.get(name, 1) for name, width in widths.items()}

    def steps(self, round_to: int) -> dict[str, int]:
        """Per group, the multiple its kept offsets are rounded up to."""
        return {name: math.lcm(groups, round_to) // groups for name, groups in self.groups.items()}

    def reduction(self, reduction_of: Callable[[str, Mapping[str, list[int]]], float]
                  ) -> Callable[[str, Mapping[str, list[int]]], float]:
        """The cost reduction of kept offsets, measured on the channels they keep."""
        return lambda metric, kept: reduction_of(metric, self.to_channels(kept))
