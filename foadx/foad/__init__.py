"""FOAD, the method: similarity accumulation, greedy selection, budgets — pure tensors.

Nothing here knows about nn.Module surgery; ``foadx.prune`` turns kept indices into networks.
"""

from foadx.foad.budget import GlobalChoice, TargetUnreachable, search_global
from foadx.foad.greedy import (
    add_back,
    greedy_select,
    kept_count_for_ratio,
    round_up_count,
    select_k,
)
from foadx.foad.similarity import SimilarityAccumulator, channel_similarity, pairwise_squared_distances

__all__ = [
    "GlobalChoice",
    "SimilarityAccumulator",
    "TargetUnreachable",
    "add_back",
    "channel_similarity",
    "greedy_select",
    "kept_count_for_ratio",
    "pairwise_squared_distances",
    "round_up_count",
    "search_global",
    "select_k",
]
