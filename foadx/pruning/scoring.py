"""Scoring, the second phase of pruning: the chosen criterion run once over the calibration images.

The scores belong to one analysis (its chosen groups, by name) and can be cut at any number of
budgets without scoring again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from foadx.device import resolve_device
from foadx.errors import BadInputError
from foadx.module_copy import copy_module
from foadx.pruning.analysis import Analysis
from foadx.pruning.batches import as_batches
from foadx.pruning.criteria import CRITERIA, ScoringInputs
from foadx.pruning.features import ProgressHook
from foadx.pruning.groups import ChannelGroup
from foadx.pruning.offsets import OffsetSpace


@dataclass(frozen=True)
class ChannelScores:
    """One criterion's scores of every chosen group, per channel: a (C, C) similarity matrix
    (``by_similarity``, FOAD) or C scores; ``images``: calibration images seen (0 for data-free
    criteria); ``batch_size`` and ``seed`` as scored."""

    criterion: str
    values: dict[str, Tensor]
    by_similarity: bool
    images: int
    batch_size: int
    seed: int

    def offsets(self, groups: list[ChannelGroup]) -> dict[str, Tensor]:
        """The scores folded to channel offsets (grouped convs select offsets, see ``OffsetSpace``)."""
        return OffsetSpace(groups).to_offsets(self.values, self.by_similarity)


def check_criterion(criterion: str, batch_size: int) -> None:
    """Raises BadInputError for a criterion not in ``CRITERIA`` or a batch size below 1."""
    if criterion not in CRITERIA:
        raise BadInputError(f"unknown criterion {criterion!r}: use one of {', '.join(CRITERIA)}")
    if batch_size < 1:
        raise BadInputError(f"batch size must be >= 1, got {batch_size}")


def score_channels(analysis: Analysis, images: Tensor | Iterable[Tensor], criterion: str = "foad", *,
                   batch_size: int = 32, seed: int = 0, progress: ProgressHook | None = None) -> ChannelScores:
    """Scores the chosen groups of ``analysis`` with ``criterion`` on ``images`` ((N, C, H, W) or
    re-iterable batches), on the analysis's device; the analysed network is not changed.

    Raises:
        BadInputError: unknown criterion or batch size below 1.
        DataError: malformed or non-finite images.
    """
    check_criterion(criterion, batch_size)
    scores = CRITERIA[criterion].score(ScoringInputs(analysis.network, analysis.chosen, as_batches(images, batch_size),
                                                     analysis.device, seed, progress))
    return ChannelScores(criterion, scores.values, scores.by_similarity, scores.images, batch_size, seed)


def group_scores(model: nn.Module, images: Tensor | Iterable[Tensor], groups: list[ChannelGroup], criterion: str,
                 *, batch_size: int = 32, seed: int = 0, device: str | torch.device | None = None,
                 progress: ProgressHook | None = None) -> tuple[dict[str, Tensor], bool]:
    """The criterion's scores of ``groups`` of ``model`` (left untouched), folded to channel
    offsets: FOAD's similarity matrices (``True``) or per-offset scores (``False``)."""
    check_criterion(criterion, batch_size)
    target_device = resolve_device(device)
    network = copy_module(model).to(target_device).eval()
    scores = CRITERIA[criterion].score(
        ScoringInputs(network, groups, as_batches(images, batch_size), target_device, seed, progress))
    return OffsetSpace(groups).to_offsets(scores.values, scores.by_similarity), scores.by_similarity
