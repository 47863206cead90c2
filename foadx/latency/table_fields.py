"""Range checks for every field of a latency table read from a user's file, so that a table with
odd numbers (a round_to of 0, an infinite input size, a negative or NaN latency, no entries) is
refused at load with one line naming the field, instead of failing or hanging in planning.

The bounds are far above any real network and far below what would make planning slow:
MobileFaceNet's table is 137 KB (about 300 entries), ResNet-56's 18 KB (41); a ResNet-50 table
at width step 8 holds some 15,000 entries (about 7 MB). Each series (one unit, one channel axis
varying) is fitted in O(n^2) for n widths, so its length is bounded too.
"""

from __future__ import annotations

import math
from typing import Any

from foadx.latency.units import ACTIVATIONS, UnitKey
from foadx.untrusted import MAX_CHANNELS, MAX_SIDE

MAX_LUT_BYTES = 16 * 1024 * 1024  # 2x a ResNet-50 table at width step 8; a 60 MB file is refused unread
MAX_ENTRIES = 40_000
MAX_CHECKS = 1_000
MAX_SERIES_POINTS = 4_096  # widths of one unit along one axis: a 4096-channel group at width step 1
MAX_BATCH = 4_096
MAX_MS = 3_600_000.0  # an hour per inference
MAX_ROUND_TO = 1_024
MAX_KERNEL = 1_024  # kernel, stride and padding
MAX_TEXT = 4_096  # characters of a model, backend or precision name


class FieldError(ValueError):
    """One field out of range: ``str()`` names it and says what it must be."""


def integer(value: Any, where: str, low: int, high: int) -> int:
    """``value`` if it is a JSON integer (not a boolean) from ``low`` to ``high``.

    Raises:
        FieldError: naming ``where``.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise FieldError(f"{where} is {_show(value)}; it must be an integer from {low} to {high:,}")
    return value


def milliseconds(value: Any, where: str) -> float:
    """``value`` as a float if it is a latency: a number in (0, ``MAX_MS``] (beyond, sums of
    entries overflow to infinity and plans are made of it).

    Raises:
        FieldError: naming ``where`` (NaN, infinities, zero, negatives, too large, strings, null).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value <= MAX_MS):
        raise FieldError(f"{where} is {_show(value)}; a latency is a number of milliseconds in (0, {MAX_MS:g}]")
    return float(value)


def finite(value: Any, where: str) -> float:
    """``value`` as a float if it is a finite number.

    Raises:
        FieldError: naming ``where``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise FieldError(f"{where} is {_show(value)}; it must be a finite number")
    return float(value)


def text(value: Any, where: str) -> str:
    """``value`` if it is a non-empty string of at most ``MAX_TEXT`` characters.

    Raises:
        FieldError: naming ``where``.
    """
    if not isinstance(value, str) or not 0 < len(value) <= MAX_TEXT:
        raise FieldError(f"{where} is {_show(value)}; it must be a non-empty string of at most {MAX_TEXT} characters")
    return value


def one_of(value: Any, where: str, allowed: tuple[str, ...]) -> str:
    """``value`` if it is one of ``allowed``.

    Raises:
        FieldError: naming ``where``.
    """
    if value not in allowed:
        raise FieldError(f"{where} is {_show(value)}; it must be one of {', '.join(allowed)}")
    return value


def array(value: Any, where: str, low: int, high: int) -> list[Any]:
    """``value`` if it is a JSON array of ``low`` to ``high`` items.

    Raises:
        FieldError: naming ``where``.
    """
    if not isinstance(value, list) or not low <= len(value) <= high:
        raise FieldError(f"{where} is {_show(value)}; it must be a list of {low} to {high:,} items")
    return value


def pair(value: Any, where: str, low: int, high: int) -> tuple[int, int]:
    """Two integers from ``low`` to ``high`` (a size, kernel, stride or padding).

    Raises:
        FieldError: naming ``where`` or the item.
    """
    first, second = array(value, where, 2, 2)
    return integer(first, f"{where}[0]", low, high), integer(second, f"{where}[1]", low, high)


def unit_key(data: Any, where: str) -> UnitKey:
    """A table entry's key, every field checked.

    Raises:
        FieldError: a field missing, unknown or out of range.
    """
    if not isinstance(data, dict):
        raise FieldError(f"{where} is {_show(data)}; it must be an object")
    names = set(UnitKey.__dataclass_fields__)
    if set(data) != names:
        odd = min(set(data) ^ names)
        raise FieldError(f"{where}.{odd} is {'missing' if odd in names else 'not a field of a unit key'}")
    activation = data["activation"]
    if activation is not None and activation not in ACTIVATIONS.values():
        raise FieldError(f"{where}.activation is {_show(activation)}; it must be one of "
                         f"{', '.join(sorted(ACTIVATIONS.values()))} or null")
    if not isinstance(data["batchnorm"], bool):
        raise FieldError(f"{where}.batchnorm is {_show(data['batchnorm'])}; it must be true or false")
    return UnitKey(integer(data["batch"], f"{where}.batch", 1, MAX_BATCH),
                   integer(data["in_channels"], f"{where}.in_channels", 1, MAX_CHANNELS),
                   integer(data["out_channels"], f"{where}.out_channels", 1, MAX_CHANNELS),
                   integer(data["height"], f"{where}.height", 1, MAX_SIDE),
                   integer(data["width"], f"{where}.width", 1, MAX_SIDE),
                   pair(data["kernel"], f"{where}.kernel", 1, MAX_KERNEL),
                   pair(data["stride"], f"{where}.stride", 1, MAX_KERNEL),
                   pair(data["padding"], f"{where}.padding", 0, MAX_KERNEL),
                   integer(data["groups"], f"{where}.groups", 1, MAX_CHANNELS),
                   data["batchnorm"], activation)


def _show(value: Any) -> str:
    """A short picture of a bad value for an error line."""
    shown = repr(value) if isinstance(value, (int, float, str, bool)) or value is None else type(value).__name__
    return shown if len(shown) <= 40 else shown[:37] + "..."
