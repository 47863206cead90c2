"""The channel criteria, as a registry: FOAD and the baselines for honest comparisons with it.

- ``foad``: the FOAD similarity of channel feature maps (docs/method.md); selection by FOAD's
  greedy rules, not by a per-channel score.
- ``l1``: L1 norm of each producing filter (Li et al., "Pruning Filters for Efficient ConvNets",
  ICLR 2017); for a coupled group the norms of all producers are summed.
- ``random``: a seeded permutation.
- ``hrank``: mean rank of each channel's feature map over the calibration images (Lin et al.,
  "HRank", CVPR 2020), at the same tap points FOAD uses.
The baselines keep the k highest-scoring channels, ties to the lower index. Adding a criterion
is one ``Criterion`` entry in ``CRITERIA`` (the CLI's help names them; a test keeps the two equal).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from foadx.foad import SimilarityAccumulator
from foadx.pruning.features import ProgressHook, accumulate_over_images
from foadx.pruning.groups import ChannelGroup


@dataclass(frozen=True)
class ScoringInputs:
    """What a criterion may look at: the unpruned network, its groups and the calibration data."""

    model: nn.Module
    groups: list[ChannelGroup]
    batches: Iterable[Tensor]
    device: torch.device
    seed: int
    progress: ProgressHook | None = None


@dataclass(frozen=True)
class Scores:
    """Per group: a similarity matrix (``by_similarity``) or one score per channel; and how
    many calibration images were seen (0 for data-free criteria)."""

    values: dict[str, Tensor]
    images: int
    by_similarity: bool


@dataclass(frozen=True)
class Criterion:
    name: str
    description: str
    score: Callable[[ScoringInputs], Scores]


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


def _from_images(inputs: ScoringInputs, make: Callable[[int], object], read: Callable[[object], Tensor],
                 by_similarity: bool) -> Scores:
    accumulators = accumulate_over_images(inputs.model, inputs.groups, inputs.batches, inputs.device, make,
                                          inputs.progress)
    images = next(iter(accumulators.values())).images
    return Scores({name: read(acc) for name, acc in accumulators.items()}, images, by_similarity)


def _foad(inputs: ScoringInputs) -> Scores:
    return _from_images(inputs, SimilarityAccumulator, lambda acc: acc.similarity(), by_similarity=True)


def _hrank(inputs: ScoringInputs) -> Scores:
    return _from_images(inputs, RankAccumulator, lambda acc: acc.scores(), by_similarity=False)


def _l1(inputs: ScoringInputs) -> Scores:
    return Scores({group.name: l1_scores(inputs.model, group) for group in inputs.groups}, 0, False)


def _random(inputs: ScoringInputs) -> Scores:
    return Scores({group.name: random_scores(group, inputs.seed) for group in inputs.groups}, 0, False)


CRITERIA: dict[str, Criterion] = {
    entry.name: entry
    for entry in (
        Criterion("foad", "FOAD: feature-map similarity, greedy selection (the method)", _foad),
        Criterion("l1", "L1 norm of each filter (Li et al. 2017)", _l1),
        Criterion("random", "seeded random channels", _random),
        Criterion("hrank", "mean feature-map rank (Lin et al. 2020)", _hrank),
    )
}
"""The criteria registry: name -> ``Criterion``; ``prune(criterion=NAME)`` and ``--criterion`` take these names."""

