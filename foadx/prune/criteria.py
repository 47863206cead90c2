"""Scores of the baseline criteria, for honest comparisons with FOAD on the same groups/budgets.

- ``l1``: L1 norm of each producing filter (Li et al., "Pruning Filters for Efficient ConvNets",
  ICLR 2017); for a coupled group the norms of all producers are summed.
- ``random``: a seeded permutation.
- ``hrank``: mean rank of each channel's feature map over the calibration images (Lin et al.,
  "HRank", CVPR 2020), at the same tap points FOAD uses.
Each keeps the k highest-scoring channels, ties to the lower index.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from foadx.prune.groups import ChannelGroup

BASELINE_CRITERIA = ("l1", "random", "hrank")


def l1_scores(model: nn.Module, group: ChannelGroup) -> Tensor:
    modules = dict(model.named_modules())
    total = torch.zeros(group.channels, dtype=torch.float64)
    for producer in group.producers:
        weight = modules[producer].weight.detach().to("cpu", torch.float64)
        total += weight.abs().reshape(weight.shape[0], -1).sum(dim=1)
    return total


def random_scores(group: ChannelGroup, seed: int) -> Tensor:
    generator = torch.Generator().manual_seed(seed + sum(map(ord, group.name)))
    return torch.rand(group.channels, generator=generator, dtype=torch.float64)


class RankAccumulator:
    """Sum over images of each channel's feature-map rank (HRank), streamed batch by batch."""

    def __init__(self, channels: int) -> None:
        self.total = torch.zeros(channels, dtype=torch.float64)
        self.images = 0

    def add(self, members: list[Tensor]) -> None:
        for maps in members:
            if maps.dim() == 4:
                ranks = torch.linalg.matrix_rank(maps.to(torch.float32))
            else:  # a linear layer's output: a scalar per channel, rank 1 where non-zero
                ranks = (maps != 0).to(torch.float64).reshape(maps.shape[0], maps.shape[1])
            self.total += ranks.to("cpu", torch.float64).sum(dim=0)
        self.images += members[0].shape[0]

    def scores(self) -> Tensor:
        return self.total / max(self.images, 1)


def keep_top_k(scores: Tensor, k: int) -> list[int]:
    """Indices of the k highest scores, ties to the lower index, sorted."""
    order = torch.sort(scores.to(torch.float64), descending=True, stable=True).indices
    return sorted(order[:k].tolist())
