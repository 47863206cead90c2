"""What a width costs the network's accuracy, for the knapsack (docs/latency.md, section 3).

A group's value at width w is measured, not summed from channel scores: keep the criterion's own
choice at w (FOAD's ``select_k``, or the top-k of l1/random/hrank) in that group alone, run the
calibration images, and take the relative squared distortion of the network's output (all its
outputs, where it returns several: ``foadx.outputs``)

    v_g(w) = - sum ||y_g,w(x) - y(x)||^2 / sum ||y(x)||^2

Removing channels is simulated exactly and without surgery: the consumers' input weights of the
removed channels are zeroed (a channel no consumer reads is a removed channel), then restored.
Distortions of different groups are in one unit, the network's output, so they compare across
groups where similarity sums do not (FOAD's similarity is unnormalised: small deep maps look
redundant, large early ones unique, whatever their effect on the output).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from foadx.device import resolve_device
from foadx.foad.greedy import select_k
from foadx.module_copy import copy_module
from foadx.outputs import flatten_outputs
from foadx.pruning.criteria import keep_top_k
from foadx.pruning.groups import ChannelGroup, build_dependency_graph

DISTORTION_IMAGES = 64  # calibration images the distortions are measured on
# images per forward pass: small batches keep activations in the allocator's reused memory
# (MobileFaceNet 112x112 on this VM: 0.34 s per 64 images in batches of 8, 0.95 s in one batch)
FORWARD_CHUNK = 8


def kept_at(scores: Tensor, by_similarity: bool, k: int) -> list[int]:
    """The criterion's own k kept offsets: FOAD's exact-k selection or the k best scores."""
    return select_k(scores, k) if by_similarity else keep_top_k(scores, k)


def _zero_inputs(module: nn.Module, channels: list[int]) -> None:
    """Zeroes the weights through which ``module`` reads input ``channels``; depthwise convs
    and per-channel layers are skipped (they are the group's own, and only consumers matter)."""
    weight = module.weight.data
    if isinstance(module, nn.Linear):
        weight[:, channels] = 0
    elif isinstance(module, nn.modules.conv._ConvTransposeNd):
        weight[channels] = 0
    elif isinstance(module, nn.modules.conv._ConvNd) and module.groups == 1:
        weight[:, channels] = 0
    elif isinstance(module, nn.modules.conv._ConvNd) and module.groups < module.in_channels:
        per_group, rows = weight.shape[1], module.out_channels // module.groups
        for channel in channels:
            group, offset = divmod(channel, per_group)
            weight[group * rows:(group + 1) * rows, offset] = 0


class ChannelRemover:
    """Hides a group's removed channels from its consumers, on a private copy of the model."""

    def __init__(self, model: nn.Module, example: Tensor) -> None:
        self.graph = build_dependency_graph(model, example)
        self.modules = dict(model.named_modules())

    @contextmanager
    def removed(self, group: ChannelGroup, channels: list[int]) -> Iterator[None]:
        root = self.modules[group.producers[0]]
        pruner = self.graph.get_pruner_of_module(root)
        consumers = [(dependency.target.module, list(indices))
                     for dependency, indices in self.graph.get_pruning_group(root, pruner.prune_out_channels, channels)
                     if not self.graph.is_out_channel_pruning_fn(dependency.handler)
                     and isinstance(getattr(dependency.target.module, "weight", None), Tensor)]
        saved = [(module, module.weight.data.clone()) for module, _ in consumers]
        try:
            for module, indices in consumers:
                _zero_inputs(module, indices)
            yield
        finally:
            for module, weight in saved:
                module.weight.data.copy_(weight)


def distortion_values(model: nn.Module, batches: Iterable[Tensor], groups: list[ChannelGroup],
                      scores: Mapping[str, Tensor], by_similarity: bool, widths: Mapping[str, list[int]],
                      device: str | torch.device | None = None) -> dict[str, dict[int, float]]:
    """v_g(w) for every group and candidate width; ``scores`` are per offset for grouped convs."""
    target = resolve_device(device)
    network = copy_module(model).to(target).eval()
    images = torch.cat(list(batches))[:DISTORTION_IMAGES].to(target)
    remover = ChannelRemover(network, images[:1])
    chunks = images.split(FORWARD_CHUNK)
    with torch.no_grad():
        references = [_outputs(network, chunk) for chunk in chunks]
        energy = sum(output.double().pow(2).sum() for outputs in references for output in outputs).clamp(min=1e-30)
        values: dict[str, dict[int, float]] = {}
        for group in groups:
            values[group.name] = {}
            offsets = group.channels // group.channel_groups
            for width in widths[group.name]:
                kept = set(kept_at(scores[group.name], by_similarity, width // group.channel_groups))
                removed = [g * offsets + j for g in range(group.channel_groups) for j in range(offsets) if j not in kept]
                if not removed:
                    values[group.name][width] = 0.0
                    continue
                with remover.removed(group, removed):
                    error = sum((output - reference).double().pow(2).sum() for chunk, outputs in zip(chunks, references)
                                for output, reference in zip(_outputs(network, chunk), outputs))
                values[group.name][width] = -(error / energy).item()
    return values


def _outputs(network: nn.Module, images: Tensor) -> list[Tensor]:
    """Every tensor ``network`` returns on ``images`` (a tuple, list or dict of them, nested), in
    ``foadx.outputs`` order: the distortion sums over all of them."""
    return [tensor for _, tensor in flatten_outputs(network(images))]
