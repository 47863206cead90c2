"""What a model's ``forward`` returns, as named tensors: the one flattening every stage uses.

A model may return one tensor, a tuple or list, a dict, a namedtuple, or any nesting of these.
The exporter names the ONNX file's outputs from here, the torch backends return their outputs
in this order under these names, and the pruner traces these tensors back to the layers it
leaves whole, so a torch model and its ONNX file compare output by output, by name.

The order is torch's pytree order (a dict in insertion order), the order both ONNX exporters
write outputs in. Names:
- one tensor: ``single`` (the caller's name, e.g. the task's ``embedding`` or ``logits``);
- a dict key or namedtuple field: the key itself (``{"logits": ...}`` -> ``logits``);
- a position in a tuple or list: its index, under ``output`` at the top level
  (``(a, b)`` -> ``output_0``, ``output_1``);
- nested: the parts joined by ``_`` (``{"aux": (a, b)}`` -> ``aux_0``, ``aux_1``).
Characters other than letters, digits and ``_`` become ``_``; a name already taken (by an
earlier output or by ``reserved``, e.g. the graph's input name) gets ``_2``, ``_3``, ....
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch.utils import _pytree as pytree

from foadx.errors import BadInputError

_NOT_NAME = re.compile(r"[^A-Za-z0-9_]")


def flatten_outputs(outputs: Any, single: str = "output", reserved: tuple[str, ...] = ()) -> list[tuple[str, torch.Tensor]]:
    """``(name, tensor)`` for every tensor in ``outputs``, in pytree order (see the module docstring).

    Raises:
        BadInputError: a returned value that is not a tensor (None, a number, a string, an
            unregistered class), naming where it sits (exit 3).
    """
    leaves, _ = pytree.tree_flatten_with_path(outputs)
    taken = set(reserved)
    named = []
    for path, value in leaves:
        name = _name(path, single)
        if not isinstance(value, torch.Tensor):
            raise BadInputError(f"the model returns a {type(value).__name__} as output {name!r}: foadx takes "
                                "tensors, and tuples, lists and dicts of them")
        unique, suffix = name, 2
        while unique in taken:
            unique, suffix = f"{name}_{suffix}", suffix + 1
        taken.add(unique)
        named.append((unique, value))
    return named


def _name(path: tuple[Any, ...], single: str) -> str:
    if not path:
        return single
    parts = [_part(key) for key in path]
    if isinstance(path[0], pytree.SequenceKey):
        parts.insert(0, "output")
    return _NOT_NAME.sub("_", "_".join(parts)) or "output"


def _part(key: Any) -> str:
    if isinstance(key, pytree.SequenceKey):
        return str(key.idx)
    if isinstance(key, pytree.MappingKey):
        return str(key.key)
    if isinstance(key, pytree.GetAttrKey):
        return key.name
    return str(key)
