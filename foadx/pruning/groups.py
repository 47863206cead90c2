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

Barriers: where torch-pruning cannot work out how channel indices pass through an op (the
view/transpose/view of ShuffleNet's channel shuffle, for instance), building its graph used to
fail outright. foadx builds the graph anyway, records each such op as a barrier, stops index
propagation at it, and leaves every group that reaches a barrier whole; the groups that never
touch one (a ShuffleNet branch's 1x1 -> depthwise -> 1x1 channels) are still pruned.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from foadx.models.input_contract import forward_refused
from foadx.outputs import flatten_outputs

_OPT = tp.ops.OPTYPE
_STRUCTURAL_OPS = {_OPT.CONCAT, _OPT.SPLIT, _OPT.SLICE, _OPT.UNBIND, _OPT.EXPAND}
_BINARY_GRAD_FNS = ("AddBackward", "SubBackward", "MulBackward", "DivBackward")


class BarrierAwareGraph(tp.DependencyGraph):
    """torch-pruning's dependency graph plus ``barriers`` (node -> why no index crosses it).
    torch-pruning recomputes every op's index mapping whenever it builds a group; here that pass
    skips the barriers, so their cut stays cut."""

    def __init__(self) -> None:
        super().__init__()
        self.barriers: dict[object, str] = {}

    def get_pruning_group(self, *args, **kwargs):
        with _mapping_pass_with_barriers(self.barriers):
            return super().get_pruning_group(*args, **kwargs)


@contextmanager
def _mapping_pass_with_barriers(barriers: dict[object, str]) -> Iterator[None]:
    """Replaces torch-pruning's index-mapping pass (which stops at the first op it cannot map)
    by one that skips barriers and records each op that fails as a new barrier."""
    from torch_pruning.dependency import index_mapping

    updaters = {_OPT.CONCAT: index_mapping.update_concat_index_mapping,
                _OPT.SPLIT: index_mapping.update_split_index_mapping,
                _OPT.RESHAPE: index_mapping.update_reshape_index_mapping,
                _OPT.UNBIND: index_mapping.update_unbind_index_mapping,
                _OPT.EXPAND: index_mapping.update_expand_index_mapping,
                _OPT.SLICE: index_mapping.update_slice_index_mapping}

    def mapping_pass(graph) -> None:
        for node in list(graph.module2node.values()):
            updater = updaters.get(node.type)
            if updater is None or node in barriers:
                continue
            try:
                updater(graph, node)
            except Exception as error:  # any failure: this op's indices cannot be followed
                barriers[node] = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
                _cut(node)

    original = index_mapping.update_index_mapping
    index_mapping.update_index_mapping = mapping_pass
    try:
        yield
    finally:
        index_mapping.update_index_mapping = original


def _cut(node: object) -> None:
    """No index passes a barrier: its own edges go, and edges into it carry no mapping."""
    node.dependencies = []
    for neighbour in node.inputs + node.outputs:
        for dependency in neighbour.dependencies:
            if dependency.target is node:
                dependency.index_mapping = [None, None]


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
    channel_groups: int = 1  # a grouped conv (1 < groups < width) among the members: cut per group

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
    channel_groups = 1
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
        channel_groups = max(channel_groups, _conv_groups(module))
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
    if root_channels % channel_groups:
        unsupported = unsupported or f"{root_channels} channels do not divide into {channel_groups} conv groups"
    return ChannelGroup(
        name=ordered[0],
        channels=root_channels,
        producers=tuple(ordered),
        members=tuple(members),
        coupled=coupled,
        unsupported=unsupported,
        channel_groups=channel_groups,
    )


def _conv_groups(module: nn.Module) -> int:
    """The group count of a grouped conv (1 < groups < channels); 1 for ordinary and depthwise
    convs (torch-pruning cuts a depthwise conv's groups with its channels)."""
    groups = getattr(module, "groups", 1)
    if not isinstance(module, nn.modules.conv._ConvNd) or groups == 1:
        return 1
    depthwise = groups == module.in_channels == module.out_channels
    return 1 if depthwise else groups


def build_dependency_graph(model: nn.Module, example_input: torch.Tensor) -> BarrierAwareGraph:
    """Traces ``model`` (autograd must be on) on an example batch; ops whose channel mapping
    cannot be followed become barriers that no index crosses."""
    graph = BarrierAwareGraph()
    with torch.enable_grad(), _mapping_pass_with_barriers(graph.barriers):
        graph.build_dependency(model, example_inputs=example_input, verbose=False)
    for node in graph.module2node.values():
        if _is_channel_reshape(node) and node not in graph.barriers:
            graph.barriers[node] = "a reshape that moves channels among feature maps (e.g. a channel shuffle)"
    for node in graph.barriers:
        _cut(node)
    return graph


def _is_channel_reshape(node: object) -> bool:
    """A view/reshape that regroups channels and is not the flatten in front of a classifier:
    torch-pruning's flatten mapping is only right when a linear layer reads the result."""
    if node.type != _OPT.RESHAPE:
        return False
    remaps = any(mapping is not None for dep in node.dependencies for mapping in dep.index_mapping)
    remaps = remaps or any(mapping is not None for neighbour in node.inputs + node.outputs
                           for dep in neighbour.dependencies if dep.target is node for mapping in dep.index_mapping)
    return remaps and not all(output.type == _OPT.LINEAR for output in node.outputs)


def discover_groups(
    model: nn.Module,
    dependency_graph: tp.DependencyGraph,
    output_layers: list[str],
) -> list[ChannelGroup]:
    """All channel groups of ``model`` in module order, leaving ``output_layers`` whole."""
    names = {module: name for name, module in model.named_modules()}
    modules = dict(model.named_modules())
    ignored = [modules[name] for name in output_layers]
    groups = list(_all_groups(dependency_graph, names, ignored))
    order = list(names.values())
    return sorted(groups, key=lambda group: order.index(group.name))


def _all_groups(graph: BarrierAwareGraph, names: dict, ignored: list[nn.Module]) -> Iterator[ChannelGroup]:
    """Like torch-pruning's ``get_all_groups`` (each conv/linear's output channels as a root,
    each group once), but a group that reaches a barrier, or that the tracer cannot build, is
    reported as unsupported instead of failing the whole model."""
    barriers = graph.barriers
    visited: set[nn.Module] = set()
    for module in list(graph.module2node):
        if module in ignored or module in visited or not isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):
            continue
        pruner = graph.get_pruner_of_module(module)
        if pruner is None or pruner.get_out_channels(module) is None:
            continue
        try:
            group = graph.get_pruning_group(module, pruner.prune_out_channels,
                                            list(range(pruner.get_out_channels(module))))
        except Exception as error:  # the tracer's own index mappings broke on this group
            yield _untraceable(module, names, pruner.get_out_channels(module), error)
            continue
        outputs = [dep.target.module for dep, _ in group if graph.is_out_channel_pruning_fn(dep.handler)]
        visited.update(outputs)
        if any(output in ignored for output in outputs):
            continue
        described = _describe(graph, group, names)
        crossed = [dep.target for dep, _ in group if dep.target in barriers]
        if crossed:
            reason = f"reaches {crossed[0].name}, an op whose channel mapping cannot be traced (a barrier)"
            described = ChannelGroup(described.name, described.channels, described.producers, described.members,
                                     described.coupled, described.unsupported or reason, described.channel_groups)
        yield described


def _untraceable(module: nn.Module, names: dict, channels: int, error: Exception) -> ChannelGroup:
    name = names[module]
    return ChannelGroup(name, channels, (name,), (GroupMember(name, "out", channels),), coupled=True,
                        unsupported=f"the graph tracer cannot follow this group ({type(error).__name__}): a barrier")


def find_output_layers(model: nn.Module, example_input: torch.Tensor) -> list[str]:
    """The conv/linear layers whose channels reach the model's outputs: never pruned, so every
    tensor ``forward`` returns (a tuple, list or dict of them, nested) keeps its shape.

    Zoo models name theirs (``output_layers()``). For others the forward pass is traced through
    autograd: from each output, back through channel-preserving ops (activations, norms,
    pooling, adds, reshapes), to the nearest conv or linear layer on every path. Where nothing
    can be traced (no parameter needs a gradient), the last conv or linear executed is taken.

    Raises:
        BadInputError: the model's forward fails on ``example_input`` (another channel count,
            more than one input ...): one line saying what was fed and what went wrong; or it
            returns something besides tensors (``foadx.outputs``) (exit 3).
    """
    declared = getattr(model, "output_layers", None)
    if callable(declared):
        return list(declared())
    executed: list[str] = []
    producers: dict[Any, str] = {}

    def record(module: nn.Module, inputs: Any, output: Any, name: str) -> None:
        executed.append(name)
        if isinstance(output, torch.Tensor) and output.grad_fn is not None:
            producers[output.grad_fn] = name

    handles = [module.register_forward_hook(lambda m, i, o, name=name: record(m, i, o, name))
               for name, module in model.named_modules() if isinstance(module, (nn.Conv2d, nn.Linear))]
    try:
        with torch.enable_grad():
            outputs = model(example_input)
    except (RuntimeError, TypeError, ValueError, IndexError) as error:  # the model's own forward refused the batch
        raise forward_refused(example_input.shape, error) from None
    finally:
        for handle in handles:
            handle.remove()
    return _layers_reaching([tensor for _, tensor in flatten_outputs(outputs)], producers) or executed[-1:]


def _layers_reaching(outputs: list[torch.Tensor], producers: dict[Any, str]) -> list[str]:
    """The layers (``producers``: autograd node -> layer name) nearest to ``outputs`` on every
    backward path, in the order first met; each node is visited once."""
    found: dict[str, None] = {}
    pending = [tensor.grad_fn for tensor in outputs if tensor.grad_fn is not None]
    seen: set[Any] = set()
    while pending:
        node = pending.pop(0)
        if node in seen:
            continue
        seen.add(node)
        if node in producers:
            found[producers[node]] = None
            continue
        pending.extend(following for following, _ in node.next_functions if following is not None)
    return list(found)
