"""Checks every option object of a task makes before any work: numbers are finite and in range."""

from __future__ import annotations

import math

from foadx.errors import BadInputError


def finite(name: str, value: float | None) -> None:
    """Refuses NaN and infinity (a typo, never a setting).

    Raises:
        BadInputError: ``value`` is not a finite number.
    """
    if value is not None and not math.isfinite(value):
        raise BadInputError(f"{name} must be a finite number, got {value}", parameters=(name,))


def at_least(name: str, value: int | float | None, lowest: int | float) -> None:
    """Refuses a number below ``lowest``.

    Raises:
        BadInputError: ``value`` < ``lowest``.
    """
    if value is not None and value < lowest:
        raise BadInputError(f"{name} must be >= {lowest}, got {value}", parameters=(name,))
