"""Prunable channel groups, found by torch-pruning's DependencyGraph.

A group is a set of channels that must be removed together: the producing conv's filters, its
BN and per-channel activation, a following depthwise conv, and the input channels of whatever
consumes them. foadx decides *which* indices to keep; torch-pruning knows *how* to cut them.

FOAD's default scope is the "decoupled" groups: exactly one producing (non-depthwise) layer and
no residual add, concat or split, so removing channels changes nothing outside the group
(docs/method.md section 4). Groups with several producers (residual adds) are "coupled" and are only
pruned when asked for. Groups that torch-pruning cannot represent faithfully — e.g. a channel
zero-padding shortcut, which it treats as a one-to-one op although it changes the width — are
marked unsupported and never pruned.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn

_OPT = tp.ops.OPTYPE
_STRUCTURAL_OPS = {_OPT.CONCAT, _OPT.SPLIT, _OPT.SLICE, _OPT.UNBIND, _OPT.EXPAND}
_BINARY_GRAD_FNS = ("AddBackward", "SubBackward", "MulBackward", "DivBackward")


@dataclass(frozen=True)
class GroupMember:
    """One module the group touches, and which of its dimensions (output or input)."""

    module: str
    dim: str  # "out" or "in"
    size: int  # number of indices the group cuts from that dimension at full width


@dataclass(frozen=True)
class ChannelGroup:
    name: str  # the first producing layer's module name, as `foadx inspect` prints it
    channels: int
    producers: tuple[str, ...]  # non-depthwise layers whose output channels are the group
    members: tuple[GroupMember, ...]
    coupled: bool
    unsupported: str | None = None  # why the group can never be pruned, if so

    @property
    def prunable_by_default(self) -> bool:
        return not self.coupled and self.unsupported is None


def _grad_fn_name(node: object) -> str:
    grad_fn = getattr(node, "grad_fn", None)
    return type(grad_fn).__name__ if grad_fn is not None else ""


def _module_out_channels(module: nn.Module) -> int | None:
    for attribute in ("out_channels", "out_features", "num_features", "num_parameters"):
        value = getattr(module, attribute, None)
        if isinstance(value, int):
            return value
    return None


def _describe(dependency_graph: tp.DependencyGraph, group: tp.Group, names: dict) -> ChannelGroup:
    producers: list[str] = []
    members: list[GroupMember] = []
    coupled = False
    unsupported = None
    root_channels = len(group[0].idxs)
    for dependency, indices in group:
        node = dependency.target
        if node.type in _STRUCTURAL_OPS:
            coupled = True
        if node.type == _OPT.ELEMENTWISE and _grad_fn_name(node).startswith(_BINARY_GRAD_FNS):
            coupled = True
        module = node.module
        if not isinstance(module, nn.Module) or module not in names:
            continue
        is_out = dependency_graph.is_out_channel_pruning_fn(dependency.handler)
        members.append(GroupMember(names[module], "out" if is_out else "in", len(indices)))
        if is_out and node.type in (_OPT.CONV, _OPT.LINEAR):
            producers.append(names[module])
        if is_out and node.type != _OPT.LINEAR:
            width = _module_out_channels(module)
            if width is not None and width != root_channels and width != 1:
                unsupported = (
                    f"{names[module]} has {width} channels where the group has {root_channels} "
                    "(a width-changing op such as channel padding joins them)"
                )
    ordered = sorted(set(producers), key=list(names.values()).index)
    if len(ordered) > 1:
        coupled = True
    if not ordered:
        unsupported = unsupported or "no producing conv or linear layer"
        ordered = [members[0].module]
    return ChannelGroup(
        name=ordered[0],
        channels=root_channels,
        producers=tuple(ordered),
        members=tuple(members),
        coupled=coupled,
        unsupported=unsupported,
    )


def build_dependency_graph(model: nn.Module, example_input: torch.Tensor) -> tp.DependencyGraph:
    """Traces ``model`` (autograd must be on) on an example batch."""
    with torch.enable_grad():
        return tp.DependencyGraph().build_dependency(model, example_inputs=example_input, verbose=False)


def discover_groups(
    model: nn.Module,
    dependency_graph: tp.DependencyGraph,
    output_layers: list[str],
) -> list[ChannelGroup]:
    """All channel groups of ``model`` in module order, leaving ``output_layers`` whole."""
    names = {module: name for name, module in model.named_modules()}
    modules = dict(model.named_modules())
    ignored = [modules[name] for name in output_layers]
    groups = [
        _describe(dependency_graph, group, names)
        for group in dependency_graph.get_all_groups(ignored_layers=ignored)
    ]
    order = list(names.values())
    return sorted(groups, key=lambda group: order.index(group.name))


def find_output_layers(model: nn.Module, example_input: torch.Tensor) -> list[str]:
    """The conv/linear layer that runs last: a model's embedding or classifier is never pruned.

    Zoo models name theirs (``output_layers()``); for others this is the layer whose output
    reaches the model output, which is the last conv or linear executed in a CNN.
    """
    declared = getattr(model, "output_layers", None)
    if callable(declared):
        return list(declared())
    executed: list[str] = []
    handles = [
        module.register_forward_hook(lambda m, i, o, name=name: executed.append(name))
        for name, module in model.named_modules()
        if isinstance(module, (nn.Conv2d, nn.Linear))
    ]
    try:
        with torch.no_grad():
            model(example_input)
    finally:
        for handle in handles:
            handle.remove()
    return executed[-1:]
