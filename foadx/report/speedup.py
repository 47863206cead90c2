"""How a speedup is written and checked wherever foadx shows one: the verdict words a measured
ratio can carry (``foadx.bench.speedup`` decides which), ``speedup_text`` (the one rendering:
``1.52x [1.48-1.57]``, ``0.04x [0.01-1.90], unstable``) and the checks a report's speedup
fields must pass beyond its JSON Schema.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from foadx.errors import BadInputError

REFERENCE = "reference"  # the row every other row is compared with
SUPPORTED = "supported"  # the interval excludes 1.0 and is narrow; its ratio may be stated as fact
NO_DIFFERENCE = "no measurable difference"  # the interval contains 1.0
UNSTABLE = "unstable"  # the interval is too wide, or either model's tail too heavy: a noisy machine
FEW_ROUNDS = "too few rounds"  # fewer rounds than the stated coverage needs
UNPAIRED = "unpaired"  # the two measurements were not interleaved (trtexec): no interval
VERDICTS = (REFERENCE, SUPPORTED, NO_DIFFERENCE, UNSTABLE, FEW_ROUNDS, UNPAIRED)
STATED_AS_FACT = (REFERENCE, SUPPORTED)


def ratio_text(value: float) -> str:
    """A ratio with two decimals (three significant digits below 0.1, so 0.004 is not 0.00)."""
    return f"{value:.2f}" if value >= 0.1 else f"{value:.2g}"


def speedup_text(value: float | None, interval: Sequence[float] | None = None, verdict: str | None = None) -> str:
    """A speedup as every table prints it: ``n/a`` without a value; ``1.52x [1.48-1.57]`` when
    supported; the verdict after the interval otherwise; ``(no interval recorded)`` for a report
    written before intervals were (``verdict`` None)."""
    if value is None:
        return "n/a"
    text = f"{ratio_text(value)}x"
    if verdict is None:
        return f"{text} (no interval recorded)"
    if verdict == REFERENCE:
        return f"{text} (reference)"
    if interval is None:
        return f"{text} ({verdict}: no interval)"
    text += f" [{ratio_text(interval[0])}-{ratio_text(interval[1])}]"
    return text if verdict == SUPPORTED else f"{text}, {verdict}"


def check_speedup(value: Any, interval: Any, verdict: Any, where: str) -> None:
    """One speedup's fields as read from a report (types already checked by its schema): a known
    verdict, an interval only with a value, ordered and holding the value.

    Raises:
        BadInputError: naming ``where`` and what is wrong.
    """
    if verdict is not None and verdict not in VERDICTS:
        raise BadInputError(f"{where}: speedup_verdict {verdict!r} is not one of {', '.join(VERDICTS)}")
    if interval is None:
        return
    low, high = interval
    if value is None or not low <= value <= high:
        raise BadInputError(f"{where}: speedup_interval {list(interval)} must be ordered and hold the speedup {value}")


def check_latency_speedups(report: dict[str, Any]) -> None:
    """Every result row's speedup fields (``check_speedup``)."""
    for index, row in enumerate(report["results"]):
        check_speedup(row["speedup_vs_first"], row.get("speedup_interval"), row.get("speedup_verdict"),
                      f"results/{index}")


def check_sweep_speedups(report: dict[str, Any]) -> None:
    """Every sweep point's speedup fields (``check_speedup``)."""
    for index, point in enumerate(report["points"]):
        check_speedup(point.get("speedup"), point.get("speedup_interval"), point.get("speedup_verdict"),
                      f"points/{index}")
