"""Feature maps at FOAD's tap points: after the producing conv's BN and activation.

Zoo models name their taps (``foad_taps()``: producer -> module, e.g. a VGG block including its
max-pool, as the reference code scores). For any other model the tap is found at run time by
following the producer's output tensor: into a BatchNorm, then into an activation module, by
tensor identity. Identity, not module order, because activation modules are often reused (a
torchvision BasicBlock calls one ReLU twice) and often in place (the BN output object is then
overwritten, so every captured tensor is cloned). Where no activation module follows (a
functional activation, a linear projection), the BN output is the tap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from foadx.errors import DataError
from foadx.pruning.groups import ChannelGroup

_FOLLOWERS = (
    nn.modules.batchnorm._BatchNorm,
    nn.ReLU,
    nn.ReLU6,
    nn.PReLU,
    nn.LeakyReLU,
    nn.ELU,
    nn.SELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Sigmoid,
    nn.Tanh,
)


class FeatureTaps:
    """Captures, per forward pass, each producer's tapped maps (cloned, detached)."""

    def __init__(self, model: nn.Module, producers: Iterable[str]) -> None:
        self.model = model
        self.producers = list(dict.fromkeys(producers))
        declared = getattr(model, "foad_taps", None)
        self.fixed_taps: dict[str, str] = dict(declared()) if callable(declared) else {}
        self.captured: dict[str, Tensor] = {}
        self._following: dict[int, tuple[str, Tensor]] = {}

    @contextmanager
    def attached(self) -> Iterator["FeatureTaps"]:
        modules = dict(self.model.named_modules())
        handles = []
        for producer in self.producers:
            tap = self.fixed_taps.get(producer)
            if tap is not None:
                handles.append(modules[tap].register_forward_hook(self._fixed_hook(producer)))
            else:
                handles.append(modules[producer].register_forward_hook(self._producer_hook(producer)))
        if any(producer not in self.fixed_taps for producer in self.producers):
            for module in self.model.modules():
                if isinstance(module, _FOLLOWERS):
                    handles.append(module.register_forward_hook(self._follower_hook))
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()
            self._following.clear()

    def _fixed_hook(self, producer: str) -> Callable:
        def hook(_module: nn.Module, _inputs: tuple, output: Tensor) -> None:
            self.captured[producer] = output.detach().clone()

        return hook

    def _producer_hook(self, producer: str) -> Callable:
        def hook(module: nn.Module, _inputs: tuple, output: Tensor) -> None:
            self.captured[producer] = output.detach().clone()
            self._following[id(output)] = (producer, output)

        return hook

    def _follower_hook(self, module: nn.Module, inputs: tuple, output: Tensor) -> None:
        if not inputs or not isinstance(inputs[0], Tensor):
            return
        entry = self._following.pop(id(inputs[0]), None)
        if entry is None or entry[1] is not inputs[0]:
            return
        producer = entry[0]
        self.captured[producer] = output.detach().clone()
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            self._following[id(output)] = (producer, output)

    def run(self, images: Tensor) -> dict[str, Tensor]:
        """One forward pass; returns producer -> maps (B, C, ...)."""
        self.captured = {}
        self._following.clear()
        with torch.no_grad():
            self.model(images)
        self._following.clear()
        missing = [producer for producer in self.producers if producer not in self.captured]
        if missing:
            raise RuntimeError(f"no feature maps were captured for {missing}")
        return self.captured


def group_maps(captured: dict[str, Tensor], group: ChannelGroup) -> list[Tensor]:
    """The member maps FOAD scores for ``group``: one per producing layer, channels first. A
    linear layer applied to channels-last maps (ConvNeXt's pointwise layers) yields (N, H, W, C):
    its channels are moved to dimension 1."""
    return [_channels_first(captured[producer], group.channels) for producer in group.producers]


def _channels_first(maps: Tensor, channels: int) -> Tensor:
    if maps.dim() > 2 and maps.shape[1] != channels and maps.shape[-1] == channels:
        return maps.movedim(-1, 1)
    return maps


ProgressHook = Callable[[str, int, "int | None"], None]


def accumulate_over_images(
    model: nn.Module,
    groups: list[ChannelGroup],
    batches: Iterable[Tensor],
    device: torch.device,
    make: Callable[[int], object],
    progress: ProgressHook | None = None,
) -> dict[str, object]:
    """One forward pass of the unpruned network; every group's accumulator sees every batch
    (one-shot scoring: pruning an earlier group never changes a later group's maps)."""
    accumulators = {group.name: make(group.channels) for group in groups}
    taps = FeatureTaps(model, [p for group in groups for p in group.producers])
    try:
        total = len(batches)
    except TypeError:  # a plain iterable of batches: no known total
        total = None
    with taps.attached():
        for index, batch in enumerate(batches):
            captured = taps.run(batch.to(device))
            for group in groups:
                maps = group_maps(captured, group)
                if not all(bool(torch.isfinite(member).all()) for member in maps):
                    raise DataError(f"the feature maps of group {group.name!r} are not finite (NaN or inf) on "
                                    f"calibration batch {index + 1}: the model or its weights produce them")
                accumulators[group.name].add(maps)
            if progress:
                progress("calibration batches", index + 1, total)
    return accumulators
