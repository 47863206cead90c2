"""Latency targets: one value (``2.0ms``, ``1.5x``) on one backend, or several
``BACKEND[@PRECISION]=T`` pairs that one plan must meet together (docs/latency.md, section 8)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from foadx.errors import BadInputError

DEFAULT_PRECISION = "fp32"  # what foadx profile measures


@dataclass(frozen=True)
class LatencyTarget:
    """A latency target: ``kind`` "ms" (``value`` in milliseconds) or "speedup" (``value`` times
    faster than the unpruned model)."""

    kind: str  # "ms" or "speedup"
    value: float

    @classmethod
    def parse(cls, text: str) -> LatencyTarget:
        """``2.0ms`` (milliseconds) or ``2.5x`` (a speedup over the unpruned model).

        Raises:
            BadInputError: another form, or a value that is not > 0 (CLI exit code 3).
        """
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|x)\s*", str(text))
        if not match or float(match.group(1)) <= 0:
            raise BadInputError(f"a latency target must look like 2.0ms or 2.5x, got {text!r}")
        return cls(match.group(2).replace("x", "speedup"), float(match.group(1)))

    def milliseconds(self, unpruned_ms: float) -> float:
        """The target in ms, given the unpruned model's latency in ms (a speedup divides it)."""
        return self.value if self.kind == "ms" else unpruned_ms / self.value

    def __str__(self) -> str:
        return f"{self.value:g}{'ms' if self.kind == 'ms' else 'x'}"


@dataclass(frozen=True)
class BackendTarget:
    """One target of a plan: a latency on ``backend`` at ``precision``."""

    backend: str
    precision: str
    target: LatencyTarget

    @property
    def name(self) -> str:
        """``BACKEND`` (or ``BACKEND@PRECISION`` off fp32): how tables and reports name it."""
        return self.backend if self.precision == DEFAULT_PRECISION else f"{self.backend}@{self.precision}"


def format_ms(value: float) -> str:
    """``value`` milliseconds as messages print them: 3 decimals, or 3 significant digits below
    0.01 ms (a tiny model's 0.0004 ms is not "0.000")."""
    return f"{value:.3f}" if abs(value) >= 0.01 or value == 0 else f"{value:.3g}"


def parse_targets(text: str, backend: str) -> list[BackendTarget]:
    """``1.5x`` (on ``backend``) or ``ort-cpu=1.5x openvino@fp32=1.4x`` (pairs separated by spaces
    or commas), in the order given.

    Raises:
        BadInputError: nothing given, a malformed pair or value, a bare value beside pairs, or one
            backend named twice (CLI exit code 3).
    """
    parts = [part for part in re.split(r"[\s,]+", str(text)) if part]
    if not parts:
        raise BadInputError(f"a latency target must be 2.0ms, 1.5x or BACKEND[@PRECISION]=T pairs, got {text!r}")
    if len(parts) == 1 and "=" not in parts[0]:
        return [BackendTarget(backend, DEFAULT_PRECISION, LatencyTarget.parse(parts[0]))]
    targets = []
    for part in parts:
        match = re.fullmatch(r"([a-z0-9-]+)(?:@([a-z0-9]+))?=(.+)", part)
        if not match:
            raise BadInputError(f"a latency target must be 2.0ms, 1.5x or BACKEND[@PRECISION]=T pairs "
                                f"such as 'ort-cpu=1.5x openvino=1.4x', got {part!r}")
        targets.append(BackendTarget(match.group(1), match.group(2) or DEFAULT_PRECISION,
                                     LatencyTarget.parse(match.group(3))))
    names = [target.name for target in targets]
    if len(set(names)) < len(names):
        raise BadInputError(f"each backend takes one latency target; {text!r} names one twice")
    return targets
