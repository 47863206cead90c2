"""The convolutions whose latency depends on the widths being chosen, and which group sets each
of their widths: a *unit* is a conv with the BatchNorm and activation that follow it (what an
exporter fuses into one kernel), keyed as HALP keys its table: batch, input and output channels,
input size, kernel, stride, padding, groups.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import torch
from torch import nn

from foadx.pruning.groups import ChannelGroup

ACTIVATIONS = {nn.PReLU: "prelu", nn.ReLU: "relu", nn.ReLU6: "relu6", nn.SiLU: "silu", nn.Hardswish: "hardswish"}


@dataclass(frozen=True)
class UnitKey:
    batch: int
    in_channels: int
    out_channels: int
    height: int
    width: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    groups: int
    batchnorm: bool
    activation: str | None

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["kernel"], data["stride"], data["padding"] = list(self.kernel), list(self.stride), list(self.padding)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> UnitKey:
        return cls(**{**data, "kernel": tuple(data["kernel"]), "stride": tuple(data["stride"]),
                      "padding": tuple(data["padding"])})


@dataclass(frozen=True)
class Unit:
    name: str
    key: UnitKey  # at full widths
    in_group: str | None  # the group that sets its input channels (None: fixed)
    out_group: str | None  # the group that sets its output channels
    depthwise: bool  # groups follow the width (groups = in = out)

    def at(self, widths: Mapping[str, int]) -> UnitKey:
        """The key at the given group widths (groups not named keep their full width)."""
        cin = widths.get(self.in_group, self.key.in_channels) if self.in_group else self.key.in_channels
        cout = widths.get(self.out_group, self.key.out_channels) if self.out_group else self.key.out_channels
        if self.depthwise:
            cin = cout = widths.get(self.out_group or self.in_group or "", self.key.out_channels)
        groups = cout if self.depthwise else self.key.groups
        return UnitKey(**{**asdict(self.key), "in_channels": cin, "out_channels": cout, "groups": groups})


def _execution_order(model: nn.Module, example: torch.Tensor) -> tuple[list[str], dict[str, tuple[int, ...]]]:
    """Leaf modules in the order they run, and each one's input shape."""
    order, shapes, hooks = [], {}, []
    names = {module: name for name, module in model.named_modules()}
    for module in model.modules():
        if not list(module.children()):
            def record(mod, inputs, _output, name=names[module]):
                if name not in shapes and inputs and isinstance(inputs[0], torch.Tensor):
                    order.append(name)
                    shapes[name] = tuple(inputs[0].shape)
            hooks.append(module.register_forward_hook(record))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for hook in hooks:
            hook.remove()
    return order, shapes


def find_units(model: nn.Module, example: torch.Tensor, groups: list[ChannelGroup], batch: int) -> list[Unit]:
    """Every Conv2d as a unit, with the groups that set its widths."""
    modules = dict(model.named_modules())
    order, shapes = _execution_order(model, example)
    out_of, in_of = {}, {}
    for group in groups:
        for member in group.members:
            (out_of if member.dim == "out" else in_of).setdefault(member.module, group.name)
    units = []
    for position, name in enumerate(order):
        conv = modules[name]
        if not isinstance(conv, nn.Conv2d):
            continue
        following = [modules[n] for n in order[position + 1: position + 3]]
        batchnorm = bool(following) and isinstance(following[0], nn.BatchNorm2d)
        after = following[1 if batchnorm else 0] if len(following) > (1 if batchnorm else 0) else None
        activation = ACTIVATIONS.get(type(after)) if after is not None else None
        depthwise = conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels
        key = UnitKey(batch, conv.in_channels, conv.out_channels, shapes[name][2], shapes[name][3],
                      tuple(conv.kernel_size), tuple(conv.stride), tuple(conv.padding), conv.groups,
                      batchnorm, activation)
        out_group = out_of.get(name)
        in_group = in_of.get(name, out_group if depthwise else None)
        units.append(Unit(name, key, in_group, out_group, depthwise))
    return units


def unit_module(key: UnitKey) -> nn.Module:
    """A conv (+ BN, + activation) as the key describes it, for timing."""
    layers: list[nn.Module] = [nn.Conv2d(key.in_channels, key.out_channels, key.kernel, key.stride, key.padding,
                                         groups=key.groups, bias=not key.batchnorm)]
    if key.batchnorm:
        layers.append(nn.BatchNorm2d(key.out_channels))
    if key.activation is not None:
        activation = {name: cls for cls, name in ACTIVATIONS.items()}[key.activation]
        layers.append(activation(key.out_channels) if activation is nn.PReLU else activation())
    return nn.Sequential(*layers).eval()


def key_macs(key: UnitKey) -> int:
    """Multiply-accumulates of one unit's convolution over its whole batch:
    ``batch x C_out x (C_in / groups) x kh x kw x H_out x W_out``."""
    out_h = (key.height + 2 * key.padding[0] - key.kernel[0]) // key.stride[0] + 1
    out_w = (key.width + 2 * key.padding[1] - key.kernel[1]) // key.stride[1] + 1
    return (key.batch * key.out_channels * (key.in_channels // key.groups) * key.kernel[0] * key.kernel[1]
            * max(out_h, 0) * max(out_w, 0))

