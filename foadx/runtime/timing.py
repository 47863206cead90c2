"""The latency harness: warm-up by time, then timed iterations, interleaved across models.

Several models measured in one call are measured in rounds — every model runs a slice of its
time budget in each round — so a slow drift of the machine (thermal state, a neighbour's load)
hits all of them alike and their ratios stay honest. Each round's median is kept: a regression
gate compares medians over rounds, not one noisy mean.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import numpy as np

from foadx.errors import BadInputError
from foadx.runtime.base import TimedStep


@dataclass(frozen=True)
class TimingSettings:
    """Like trtexec's --warmUp (ms), --duration (s) and --iterations (a minimum)."""

    warmup_ms: float = 200.0
    duration_s: float = 3.0
    min_iterations: int = 10
    rounds: int = 5

    def __post_init__(self) -> None:
        finite = math.isfinite(self.warmup_ms) and math.isfinite(self.duration_s)
        if not finite or self.warmup_ms < 0 or self.duration_s <= 0 or self.min_iterations < 1 or self.rounds < 1:
            raise BadInputError(
                "timing needs a finite warm-up >= 0 ms, a finite duration > 0 s, at least 1 iteration and 1 round"
            )


@dataclass
class Samples:
    """One measured configuration: per-iteration latencies (ms) grouped by round."""

    rounds: list[list[float]]

    @property
    def latencies_ms(self) -> list[float]:
        """Every iteration's latency (ms), rounds concatenated in order."""
        return [value for round_values in self.rounds for value in round_values]


def warm_up(step: TimedStep, warmup_ms: float) -> None:
    """Runs ``step`` at least once, then until ``warmup_ms`` milliseconds have passed."""
    deadline = time.perf_counter() + warmup_ms / 1000.0
    step()  # at least once: first calls allocate, compile kernels, capture graphs
    while time.perf_counter() < deadline:
        step()


def _run_for(step: TimedStep, seconds: float, iterations: int) -> list[float]:
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(samples) < iterations or time.perf_counter() < deadline:
        samples.append(step() * 1000.0)
    return samples


def measure_interleaved(
    steps: dict[Hashable, TimedStep],
    settings: TimingSettings,
    progress: Callable[[int, int], None] | None = None,
) -> dict[Hashable, Samples]:
    """Warms up every step, then runs ``settings.rounds`` rounds visiting every step in turn."""
    for step in steps.values():
        warm_up(step, settings.warmup_ms)
    per_round_seconds = settings.duration_s / settings.rounds
    per_round_iterations = math.ceil(settings.min_iterations / settings.rounds)
    results = {key: Samples(rounds=[]) for key in steps}
    total = settings.rounds * len(steps)
    for round_index in range(settings.rounds):
        for position, (key, step) in enumerate(steps.items()):
            results[key].rounds.append(_run_for(step, per_round_seconds, per_round_iterations))
            if progress is not None:
                progress(round_index * len(steps) + position + 1, total)
    return results


PERCENTILES = (50, 90, 95, 99)


def summarize(samples: Samples, batch_size: int) -> dict[str, object]:
    """trtexec-style statistics (ms) and throughput (images/s) for one configuration."""
    values = np.asarray(samples.latencies_ms, dtype=np.float64)
    percentiles = np.percentile(values, PERCENTILES)
    round_medians = [float(np.median(round_values)) for round_values in samples.rounds]
    median_of_rounds = float(np.median(round_medians))
    return {
        "iterations": int(values.size),
        "latency_ms": {
            "mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
            "min": float(values.min()),
            "max": float(values.max()),
            **{f"p{p}": float(v) for p, v in zip(PERCENTILES, percentiles)},
        },
        "round_medians_ms": round_medians,
        "median_of_rounds_ms": median_of_rounds,
        "throughput_ips": batch_size * 1000.0 / median_of_rounds,
    }
