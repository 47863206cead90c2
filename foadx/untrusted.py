"""Reading a file a user hands foadx: data, never code, never a hang, memory in proportion.

Every reader of a user's JSON or TOML file (pipeline files, latency tables, reports, baselines,
ratio and weight-map files, records in a run folder) goes through here, so the promise is kept
in one place: the path must be a regular file (a FIFO or a device is refused before it is
opened, so nothing blocks), its size is bounded before it is read, and its nesting is bounded
(a document nested 100,000 deep is refused instead of exhausting the interpreter's stack).
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from foadx.errors import BadInputError

MAX_DEPTH = 64  # nesting of arrays and objects; foadx's own files stay under 8
MAX_CHANNELS = 65_536  # channels of an input or a layer a file may declare (latency tables, ONNX inputs)
MAX_SIDE = 16_384  # pixels a side of an input or a feature map a file may declare
MAX_TENSOR_BYTES = 1 << 30  # one tensor a model computes at batch 1: 16x ResNet-50's largest at 1024x1024


def regular_file(path: str | Path, what: str) -> Path:
    """``path`` if it names a regular file (a link to one is followed).

    Raises:
        BadInputError: missing, a folder, a FIFO, a socket or a device (exit 3).
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise BadInputError(f"{what} not found: {path}") from None
    except OSError as error:
        raise BadInputError(f"{what} {path} cannot be read: {error.strerror}") from None
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a FIFO, socket or device)"
        raise BadInputError(f"{what} {path} is {kind}")
    return path


def read_text(path: str | Path, what: str, max_bytes: int) -> str:
    """The UTF-8 text of a regular file of at most ``max_bytes`` bytes.

    Raises:
        BadInputError: not a regular file, larger than ``max_bytes``, unreadable or not UTF-8.
    """
    path = regular_file(path, what)
    size = path.stat().st_size
    if size > max_bytes:
        raise BadInputError(f"{what} {path} holds {size:,} bytes; at most {max_bytes:,} are read")
    try:
        with open(path, "rb") as stream:
            data = stream.read(max_bytes + 1)
    except OSError as error:
        raise BadInputError(f"{what} {path} cannot be read: {error.strerror}") from None
    if len(data) > max_bytes:  # grew since it was measured
        raise BadInputError(f"{what} {path} holds more than {max_bytes:,} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInputError(f"{what} {path} is not UTF-8 text") from None


def read_json(path: str | Path, what: str, max_bytes: int) -> Any:
    """A JSON document of at most ``max_bytes`` bytes nested at most ``MAX_DEPTH`` deep.

    Raises:
        BadInputError: as ``read_text``, or not JSON, or nested too deep (exit 3).
    """
    return _parsed(path, what, read_text(path, what, max_bytes), json.loads, ValueError, "not JSON")


def read_toml(path: str | Path, what: str, max_bytes: int) -> tuple[dict[str, Any], str]:
    """A TOML document (and its text, for line numbers), bounded like ``read_json``.

    Raises:
        BadInputError: as ``read_text``, or not TOML, or nested too deep (exit 3).
    """
    import tomllib

    text = read_text(path, what, max_bytes)
    return _parsed(path, what, text, tomllib.loads, tomllib.TOMLDecodeError, "not a TOML file"), text


def _parsed(path: str | Path, what: str, text: str, parse: Callable[[str], Any], malformed: type[Exception],
            meaning: str) -> Any:
    try:
        data = parse(text)
    except RecursionError:
        raise BadInputError(f"{what} {path} is nested deeper than {MAX_DEPTH} levels") from None
    except malformed as error:
        raise BadInputError(f"{what} {path} is {meaning}: {str(error).splitlines()[0]}") from None
    check_depth(data, f"{what} {path}")
    return data


def check_depth(data: Any, what: str, limit: int = MAX_DEPTH) -> None:
    """Refuses a structure of lists and dicts nested deeper than ``limit`` (walked without
    recursion, in time proportional to its size).

    Raises:
        BadInputError: nested deeper than ``limit``.
    """
    pending = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, (list, dict)):
            if depth > limit:
                raise BadInputError(f"{what} is nested deeper than {limit} levels")
            children = value.values() if isinstance(value, dict) else value
            pending.extend((child, depth + 1) for child in children)


def non_finite_path(data: Any) -> str | None:
    """The path (``results/0/latency_ms/p50``) of the first NaN or infinite number in a
    structure of lists and dicts, or None: Python's JSON reader takes ``NaN`` and ``Infinity``,
    and every range check passes a NaN (all its comparisons are false)."""
    pending: list[tuple[Any, str]] = [(data, "")]
    while pending:
        value, where = pending.pop()
        if isinstance(value, float) and not math.isfinite(value):
            return where or "(top level)"
        if isinstance(value, (list, dict)):
            items = value.items() if isinstance(value, dict) else enumerate(value)
            pending.extend((child, f"{where}/{key}" if where else str(key)) for key, child in items)
    return None

