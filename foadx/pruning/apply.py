"""Turning kept indices into a smaller network, through torch-pruning's group surgery."""

from __future__ import annotations

from collections.abc import Mapping

import torch_pruning as tp
from torch import nn

from foadx.pruning.groups import ChannelGroup


def apply_kept(
    model: nn.Module,
    dependency_graph: tp.DependencyGraph,
    groups: list[ChannelGroup],
    kept: Mapping[str, list[int]],
) -> None:
    """Removes, in place, every channel of each group in ``kept`` that is not kept.

    The network keeps its topology: only widths change, no layer is added or removed.
    """
    modules = dict(model.named_modules())
    by_name = {group.name: group for group in groups}
    for name, indices in kept.items():
        group = by_name[name]
        removed = sorted(set(range(group.channels)) - set(indices))
        if not removed:
            continue
        root = modules[group.producers[0]]
        pruner = dependency_graph.get_pruner_of_module(root)
        dependency_graph.get_pruning_group(root, pruner.prune_out_channels, removed).prune()
