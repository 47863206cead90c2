"""Copying a user's module: the one copy every stage makes before it changes or runs a model.

``copy.deepcopy`` refuses a module that keeps a tensor of an autograd graph on itself — a
forward that stores ``self.last = features`` (as Grad-CAM hooks and auxiliary losses do) after
a traced or grad-enabled pass, or ``weight_norm``'s computed weight: torch copies only tensors
that are graph leaves. ``copy_module`` copies such tensors detached (values kept, graph
dropped); parameters and buffers that are leaves are copied as ``deepcopy`` always did.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any, TypeVar

import torch
from torch import nn

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def copy_module(module: ModuleT) -> ModuleT:
    """A deep copy of ``module``; tensors in its attributes (directly, or in lists, tuples,
    sets and dicts) that belong to an autograd graph are copied detached."""
    memo: dict[int, Any] = {}
    for submodule in module.modules():
        for name, value in vars(submodule).items():
            if name in ("_modules", "_parameters"):  # submodules are visited themselves; parameters are leaves
                continue
            for tensor in _tensors_in(value):
                if not tensor.is_leaf:
                    memo[id(tensor)] = tensor.detach().clone()
    return copy.deepcopy(module, memo)


def _tensors_in(value: Any) -> Iterator[torch.Tensor]:
    """Tensors in ``value``: itself, or inside (nested) lists, tuples, sets and dicts."""
    pending = [value]
    seen: set[int] = set()
    while pending:
        item = pending.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, torch.Tensor):
            yield item
        elif isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            pending.extend(item)
