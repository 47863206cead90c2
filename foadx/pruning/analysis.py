"""Analysis, the first phase of pruning: the network as the pruner sees it.

One traced copy of the unpruned network with its dependency graph (torch-pruning), the layers
never pruned, every channel group and the ones in the chosen scope, and the cost model that
predicts MACs/params for any widths. Scoring reads it and cutting copies it, so one analysis
serves any number of cuts. ``trace_groups`` is the one place that runs the sequence
find_output_layers -> build_dependency_graph -> discover_groups.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from foadx.device import resolve_device
from foadx.errors import BadInputError
from foadx.module_copy import copy_module
from foadx.pruning.cost import CostModel
from foadx.pruning.groups import (
    BarrierAwareGraph,
    ChannelGroup,
    build_dependency_graph,
    discover_groups,
    find_output_layers,
)
from foadx.provenance import ModelSource, Plan, Provenance, provenance_of


@dataclass
class Analysis:
    """The unpruned network (a copy on the target device, eval mode) and what the pruner knows
    of it. ``example`` is a batch of two inputs (2, C, H, W); ``provenance`` is the model's own
    record, or the contract read off the calibration images for a module foadx did not build."""

    network: nn.Module
    example: Tensor
    dependency_graph: BarrierAwareGraph
    output_layers: list[str]
    all_groups: list[ChannelGroup]
    chosen: list[ChannelGroup]
    cost_model: CostModel
    provenance: Provenance
    include_coupled: bool = False
    exclude: tuple[str, ...] = ()

    @property
    def device(self) -> torch.device:
        return self.example.device


def trace_groups(network: nn.Module, example: Tensor, output_layers: list[str] | None = None
                 ) -> tuple[list[str], BarrierAwareGraph, list[ChannelGroup]]:
    """Traces ``network`` in place on ``example`` (N, C, H, W): its output layers (``None``:
    found by running it, else as given, e.g. by a plan), its dependency graph and all its
    channel groups in module order."""
    layers = find_output_layers(network, example) if output_layers is None else list(output_layers)
    dependency_graph = build_dependency_graph(network, example)
    return layers, dependency_graph, discover_groups(network, dependency_graph, layers)


def select_groups(groups: list[ChannelGroup], include_coupled: bool, exclude: Iterable[str]) -> list[ChannelGroup]:
    """The groups in scope: supported, decoupled unless ``include_coupled``, not named in ``exclude``.

    Raises:
        BadInputError: ``exclude`` names a group the model does not have.
    """
    excluded = set(exclude)
    unknown = excluded - {group.name for group in groups}
    if unknown:
        raise BadInputError(f"unknown group(s) to exclude: {', '.join(sorted(unknown))} (foadx.pruning.inspect_model lists the groups)")
    return [group for group in groups
            if group.unsupported is None and (include_coupled or not group.coupled) and group.name not in excluded]


def prunable_groups(model: nn.Module, example: Tensor, include_coupled: bool = False,
                    exclude: Iterable[str] = ()) -> list[ChannelGroup]:
    """The groups ``prune`` would cut with these scope options (for planning before pruning);
    ``model`` is left untouched."""
    _, _, groups = trace_groups(copy_module(model).eval(), example)
    return select_groups(groups, include_coupled, exclude)


def input_provenance(model: nn.Module, example: Tensor, source: ModelSource | None = None) -> Provenance:
    """The model's provenance; for a module foadx did not build, ``source`` (a rebuildable spec
    the caller names) or the contract of ``example`` (N, C, H, W) with no spec.

    Raises:
        BadInputError: ``source`` given for a foadx-built model, or its C x H x W differs from the images'.
    """
    recorded = provenance_of(model)
    chw = tuple(int(v) for v in example.shape[1:])
    if recorded is not None:
        if source is not None:
            raise BadInputError("source names how to rebuild a module foadx did not build; "
                                f"this one was built from {recorded.source.spec}")
        return recorded
    if source is None:
        return Provenance(Plan.empty(ModelSource.in_memory(type(model).__name__, chw)))
    if source.input_chw != chw:
        raise BadInputError(f"source {source.spec} takes C x H x W {source.input_chw}, the images are {chw}")
    return Provenance(Plan.empty(source))


def analyse(model: nn.Module, example: Tensor, *, include_coupled: bool = False, exclude: Iterable[str] = (),
            device: str | torch.device | None = None, source: ModelSource | None = None) -> Analysis:
    """Analyses a copy of ``model`` on ``device`` (``model`` is left untouched).

    Args:
        example: at least one input (N, C, H, W); its first two images are traced.
        include_coupled: also choose the residual-coupled groups.
        exclude: names of groups to leave whole.
        source: how to rebuild a module foadx did not build (see ``input_provenance``).

    Raises:
        BadInputError: an unknown group in ``exclude``, or no prunable group in the chosen scope.
    """
    provenance = input_provenance(model, example, source)
    target = resolve_device(device)
    network = copy_module(model).to(target).eval()
    example = example[:2].to(target)
    output_layers, dependency_graph, all_groups = trace_groups(network, example)
    chosen = select_groups(all_groups, include_coupled, exclude)
    if not chosen:
        raise BadInputError("the model has no prunable channel groups in the chosen scope")
    return Analysis(network, example, dependency_graph, output_layers, all_groups, chosen,
                    CostModel(network, chosen, example), provenance, include_coupled, tuple(sorted(set(exclude))))
