"""Parameter and multiply-add counts, for a network as it is and as a plan would build it.

MACs count conv and linear multiply-adds (the convention of the MobileFaceNet and FOAD papers);
parameters count every trainable tensor. ``CostModel`` predicts both for any per-group kept
counts without building the network, which the global FLOPs/params targets need in their
bisection; tests check its predictions against a count of the really pruned network.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from foadx.pruning.groups import ChannelGroup


@dataclass(frozen=True)
class ModelCost:
    params: int
    macs: int


def _layer_macs(module: nn.Module, output: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        per_output = (module.in_channels // module.groups) * module.kernel_size[0] * module.kernel_size[1]
        return output[0].numel() * per_output
    if isinstance(module, nn.Linear):
        return (output[0].numel() // module.out_features) * module.in_features * module.out_features
    return 0


def conv_linear_outputs(model: nn.Module, example_input: torch.Tensor) -> dict[str, tuple[nn.Module, torch.Tensor]]:
    """Each conv/linear layer's output for one image, from one eval-mode forward pass.

    Eval mode because BN must neither update its statistics nor need a batch larger than one.
    """
    outputs: dict[str, tuple[nn.Module, torch.Tensor]] = {}
    handles = [
        module.register_forward_hook(lambda m, _i, out, name=name: outputs.__setitem__(name, (m, out)))
        for name, module in model.named_modules()
        if isinstance(module, (nn.Conv2d, nn.Linear))
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example_input[:1])
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return outputs


def count_cost(model: nn.Module, example_input: torch.Tensor) -> ModelCost:
    """Counts params and per-image conv/linear MACs with one forward pass."""
    outputs = conv_linear_outputs(model, example_input).values()
    macs = sum(_layer_macs(module, output) for module, output in outputs)
    return ModelCost(params=sum(p.numel() for p in model.parameters()), macs=macs)


@dataclass
class _Layer:
    name: str
    module: nn.Module
    spatial: int  # output positions per image (convs), rows per image (linear), else 0
    out_group: str | None = None
    in_group: str | None = None
    in_multiplier: int = 1  # input features per channel (a linear after a flatten of HxW)


class CostModel:
    """Predicts params and MACs from per-group kept counts."""

    def __init__(self, model: nn.Module, groups: list[ChannelGroup], example_input: torch.Tensor) -> None:
        self._channels = {group.name: group.channels for group in groups}
        self._layers: dict[str, _Layer] = {}
        spatial = {
            name: output[0].numel() // _output_width(module)
            for name, (module, output) in conv_linear_outputs(model, example_input).items()
        }
        for name, module in model.named_modules():
            if next(module.parameters(recurse=False), None) is not None:
                self._layers[name] = _Layer(name, module, spatial.get(name, 0))
        for group in groups:
            for member in group.members:
                layer = self._layers.get(member.module)
                if layer is None:
                    continue
                if member.dim == "out":
                    layer.out_group = group.name
                else:
                    layer.in_group = group.name
                    layer.in_multiplier = max(1, member.size // group.channels)
        self.full = self.evaluate({})

    def evaluate(self, kept: Mapping[str, int]) -> ModelCost:
        """Cost when group ``g`` keeps ``kept[g]`` channels (absent groups stay whole)."""
        params = macs = 0
        for layer in self._layers.values():
            p, m = self._layer_cost(layer, kept)
            params += p
            macs += m
        return ModelCost(params, macs)

    def _width(self, group: str | None, kept: Mapping[str, int], full: int, multiplier: int = 1) -> int:
        if group is None or group not in kept:
            return full
        return kept[group] * multiplier if multiplier > 1 else full - (self._channels[group] - kept[group])

    def _layer_cost(self, layer: _Layer, kept: Mapping[str, int]) -> tuple[int, int]:
        module = layer.module
        if isinstance(module, nn.Conv2d):
            out_c = self._width(layer.out_group, kept, module.out_channels)
            in_c = self._width(layer.in_group, kept, module.in_channels)
            depthwise = module.groups == module.in_channels == module.out_channels and module.groups > 1
            groups = in_c if depthwise else module.groups
            kernel = module.kernel_size[0] * module.kernel_size[1]
            weights = out_c * (in_c // groups) * kernel
            bias = out_c if module.bias is not None else 0
            return weights + bias, weights * layer.spatial
        if isinstance(module, nn.Linear):
            out_f = self._width(layer.out_group, kept, module.out_features)
            in_f = self._width(layer.in_group, kept, module.in_features, layer.in_multiplier)
            bias = out_f if module.bias is not None else 0
            return out_f * in_f + bias, out_f * in_f * layer.spatial
        params = 0
        for parameter in module.parameters(recurse=False):
            full = parameter.shape[0] if parameter.dim() else 1
            if layer.out_group is not None and parameter.dim() and full > 1:
                params += parameter.numel() // full * self._width(layer.out_group, kept, full)
            else:
                params += parameter.numel()
        return params, 0


def _output_width(module: nn.Module) -> int:
    return module.out_channels if isinstance(module, nn.Conv2d) else module.out_features
