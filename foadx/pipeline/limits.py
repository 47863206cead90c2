"""The ranges a pipeline field's value must lie in, checked when the file is loaded (before any
stage runs): a ``Check`` returns None for a value it accepts, else what it wants ("a fraction in
(0, 1)"). An unset optional field (None) is always accepted.

The upper bounds keep a typo from becoming a run that never ends (``rounds = 10000000000``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

Check = Callable[[Any], "str | None"]

MAX_COUNT = 1_000_000  # images, steps, rounds and other counts
MAX_SECONDS = 3600.0  # one measurement's duration


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def between(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Check:
    """A finite number in [low, high]; ``low_open``/``high_open`` exclude that end."""
    wanted = f"a finite number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"

    def check(value: Any) -> str | None:
        if value is None:
            return None
        if not _number(value) or value < low or value > high or (low_open and value == low) \
                or (high_open and value == high):
            return wanted
        return None

    return check


def count(high: int = MAX_COUNT) -> Check:
    """A whole number in [1, high]."""
    def check(value: Any) -> str | None:
        if value is None or (isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= high):
            return None
        return f"a whole number in [1, {high:,}]"

    return check


def fraction() -> Check:
    """A fraction in (0, 1)."""
    return between(0.0, 1.0, low_open=True, high_open=True)


def one_of(names: Callable[[], Iterable[str]]) -> Check:
    """One of ``names()`` (called when checking, so a registry is imported only then)."""
    def check(value: Any) -> str | None:
        known = list(names())
        return None if value is None or value in known else f"one of {', '.join(known)}"

    return check


def each(inner: Check) -> Check:
    """A non-empty list whose every item passes ``inner``."""
    def check(value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, list) or not value:
            return "a non-empty list"
        problems = [inner(item) for item in value]
        wrong = next((problem for problem in problems if problem is not None), None)
        return None if wrong is None else f"a non-empty list, each {wrong}"

    return check


def batches(value: Any) -> str | None:
    """A non-empty list of batch sizes, each a whole number in [1, 65536]."""
    if value is None or (isinstance(value, list) and value and all(count(65536)(v) is None for v in value)):
        return None
    return "a non-empty list of positive integers up to 65,536"


def text(high: int = 4096) -> Check:
    """A non-empty string of at most ``high`` characters without NUL (a MODEL, a data source)."""
    def check(value: Any) -> str | None:
        if value is None or (isinstance(value, str) and 0 < len(value) <= high and "\x00" not in value):
            return None
        return f"a non-empty string of at most {high:,} characters without NUL"

    return check


def protocols() -> Iterable[str]:
    """The face verification protocols (``foadx.evaluate.protocols.PROTOCOLS``)."""
    from foadx.evaluate.protocols import PROTOCOLS

    return PROTOCOLS


def criteria() -> Iterable[str]:
    """The pruning criteria's names (``foadx.pruning.CRITERIA``)."""
    from foadx.pruning import CRITERIA

    return CRITERIA


def backends() -> Iterable[str]:
    """The runtime backends' names (``foadx.runtime.registry.BACKENDS``)."""
    from foadx.runtime.registry import BACKENDS

    return BACKENDS


def export_targets() -> Iterable[str]:
    """The export targets' names (``foadx.export.targets.TARGETS``)."""
    from foadx.export.targets import TARGETS

    return TARGETS


def allocations() -> Iterable[str]:
    """How a latency budget is shared out (``foadx.latency.api.ALLOCATIONS``)."""
    from foadx.latency.api import ALLOCATIONS

    return ALLOCATIONS


def tasks() -> Iterable[str]:
    """The data tasks (``foadx.data.layout.TASKS``)."""
    from foadx.data.layout import TASKS

    return TASKS


def latency_target(value: Any) -> str | None:
    """A latency target ``foadx.latency.targets.parse_targets`` reads: one value (``2.0ms``,
    ``1.5x``, on the stage's backend) or several ``BACKEND=T`` pairs on backends latency profiling
    runs on (a pipeline has no table to give, and ``foadx profile`` measures fp32)."""
    from foadx.errors import BadInputError
    from foadx.latency.targets import DEFAULT_PRECISION, parse_targets
    from foadx.runtime.registry import backend_names

    if value is None:
        return None
    try:
        targets = parse_targets(value, "ort-cpu")
    except BadInputError:
        return "a latency like 2.0ms, a speedup like 1.5x, or pairs like 'ort-cpu=1.5x openvino=1.4x'"
    profiled = backend_names(profiling=True)
    if any(target.backend not in profiled or target.precision != DEFAULT_PRECISION for target in targets):
        return f"targets on backends a pipeline profiles at fp32 ({', '.join(profiled)})"
    return None


def export_opset(value: Any) -> str | None:
    """An opset ``foadx export`` writes (``check_opset``: LEGACY_MIN_OPSET up to onnx's newest)."""
    import onnx

    from foadx.export.onnx_export import LEGACY_MIN_OPSET

    newest = onnx.defs.onnx_opset_version()
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and LEGACY_MIN_OPSET <= value <= newest):
        return None
    return f"a whole number in [{LEGACY_MIN_OPSET}, {newest}]"


def export_batch(value: Any) -> str | None:
    """An export batch: a whole number in [1, 65536] or "dynamic"."""
    if value is None or value == "dynamic" or count(65536)(value) is None:
        return None
    return 'a whole number in [1, 65,536] or "dynamic"'
