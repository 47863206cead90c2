"""A restricted unpickler: admits plain containers and numpy arrays, refuses everything else.

Dataset files such as CIFAR's python batches are pickles; a pickle can name any callable and
so run code when loaded. This one resolves only the globals numpy needs to rebuild an array.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

from foadx.errors import DataError

_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, stream: io.BufferedIOBase, allowed: set[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(stream, **kwargs)
        self._allowed = allowed

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._allowed:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


# Python 3 writes bytes objects at protocol 2 as _codecs.encode(text, "latin1"): harmless.
_CODECS = {("_codecs", "encode")}


MAX_DEPTH = 32  # dataset pickles nest a dict, a list and an array: a few levels at most


def check_structure(data: bytes, source: str) -> None:
    """Scans the opcodes before anything is built: containers nested deeper than ``MAX_DEPTH``
    (which downstream conversions would recurse through) are refused, and so is a stream the
    scanner cannot parse."""
    import pickletools

    depth = 0
    try:
        for opcode, _, _ in pickletools.genops(data):
            if opcode.name == "MARK":
                depth += 1
                if depth > MAX_DEPTH:
                    raise DataError(f"{source}: containers nested more than {MAX_DEPTH} deep; not a dataset pickle")
            elif any(item is pickletools.markobject for item in opcode.stack_before):
                depth = max(0, depth - 1)
    except DataError:
        raise
    except (ValueError, IndexError, KeyError) as error:
        raise DataError(f"{source}: not a readable pickle ({error})") from error


def safe_load(data: bytes, *, allow_numpy: bool, encoding: str = "bytes", source: str = "pickle") -> Any:
    allowed = _CODECS | (_NUMPY_GLOBALS if allow_numpy else set())
    check_structure(data, source)
    try:
        return _RestrictedUnpickler(io.BytesIO(data), allowed, encoding=encoding).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise DataError(f"{source}: not a plain data pickle ({error})") from error
