"""Timing units and whole networks on a backend with foadx's harness (warm-up, interleaved
rounds, medians): a torch backend runs the module; an ONNX backend runs it exported in that
backend's own form (``foadx.runtime.registry.Backend.export_target``)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable
from itertools import islice
from pathlib import Path
from typing import Any

from torch import nn

from foadx.export import export_onnx
from foadx.latency.units import UnitKey, unit_module
from foadx.runtime import (
    SessionOptions,
    TimingSettings,
    get_backend,
    measure_interleaved,
    open_session,
    summarize,
)
from foadx.runtime.base import Session, TimedStep

UNIT_CHUNK = 24  # sessions open at once while timing units
UNIT_OPSET = 17  # the legacy exporter: units are tiny and the dynamo exporter's start-up would dominate
UNIT_TIMING = TimingSettings(warmup_ms=20.0, duration_s=0.15, min_iterations=10, rounds=3)
NETWORK_TIMING = TimingSettings(warmup_ms=200.0, duration_s=2.0, min_iterations=10, rounds=5)


def _session(backend: str, module: nn.Module, input_chw: tuple[int, int, int], batch: int, scratch: Path,
             opset: int | None = None) -> Session:
    entry = get_backend(backend)
    if entry.loads == "torch":
        return open_session(backend, module, SessionOptions(), input_shape=(None, *input_chw))
    path = scratch / f"m{len(list(scratch.iterdir()))}.onnx"
    extra = {"opset": opset} if opset is not None else {}
    export_onnx(module, path, batch=batch, input_size=input_chw[1:], input_channels=input_chw[0],
                target=entry.export_target, verify=False, **extra)
    return open_session(backend, path)


def _chunks(items: list, size: int) -> Iterable[list]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def measure_units(keys: list[UnitKey], backend: str, timing: TimingSettings = UNIT_TIMING,
                  progress: Callable[[int, int], None] | None = None) -> dict[UnitKey, float]:
    """Median ms of every unit, interleaved within chunks of ``UNIT_CHUNK``."""
    measured: dict[UnitKey, float] = {}
    with tempfile.TemporaryDirectory(prefix="foadx-profile-") as scratch:
        for chunk in _chunks(sorted(set(keys), key=lambda k: str(k)), UNIT_CHUNK):
            steps = {}
            for key in chunk:
                session = _session(backend, unit_module(key), (key.in_channels, key.height, key.width), key.batch,
                                   Path(scratch), UNIT_OPSET)
                steps[key] = session.timed_step(key.batch)
            for key, samples in measure_interleaved(steps, timing).items():
                measured[key] = summarize(samples, key.batch)["median_of_rounds_ms"]
            for path in Path(scratch).iterdir():
                path.unlink()
            if progress:
                progress(len(measured), len(set(keys)))
    return measured


class PairTimer:
    """Interleaved pairs of whole networks on one backend: each network becomes a timed step once
    (exported in the backend's form and opened), then any two steps are timed in the same rounds
    as often as asked. Use as a context manager (it owns the scratch folder of exported files)."""

    def __init__(self, backend: str, input_chw: tuple[int, int, int], batch: int,
                 timing: TimingSettings = NETWORK_TIMING) -> None:
        self.backend, self.input_chw, self.batch, self.timing = backend, input_chw, batch, timing
        self._scratch = tempfile.TemporaryDirectory(prefix="foadx-profile-")

    def __enter__(self) -> PairTimer:
        return self

    def __exit__(self, *_: object) -> None:
        self._scratch.cleanup()

    def step(self, model: nn.Module) -> TimedStep:
        """``model`` ready to time (exported, for an ONNX backend, into the scratch folder)."""
        return _session(self.backend, model, self.input_chw, self.batch, Path(self._scratch.name)).timed_step(self.batch)

    def time(self, steps: dict[str, TimedStep]) -> dict[str, dict[str, Any]]:
        """One interleaved measurement of ``steps``: each one's median of round medians, p90 and
        round medians (ms; round i of every step timed one after the other)."""
        measured = measure_interleaved(steps, self.timing)
        summaries = {name: summarize(samples, self.batch) for name, samples in measured.items()}
        return {name: {"median_ms": s["median_of_rounds_ms"], "p90_ms": s["latency_ms"]["p90"],
                       "round_medians_ms": s["round_medians_ms"]} for name, s in summaries.items()}


def measure_pairs(models: dict[str, nn.Module], backend: str, input_chw: tuple[int, int, int], batch: int,
                  pairs: int, progress: Callable[[int, int], None] | None = None,
                  timing: TimingSettings = NETWORK_TIMING) -> list[dict[str, dict[str, Any]]]:
    """``pairs`` interleaved measurements of the same networks (opened once), one after the
    other: per measurement, each network's median and p90 ms. ``progress(done, pairs)`` after each."""
    with PairTimer(backend, input_chw, batch, timing) as timer:
        steps = {name: timer.step(model) for name, model in models.items()}
        measured = []
        for _ in range(pairs):
            measured.append(timer.time(steps))
            if progress:
                progress(len(measured), pairs)
    return measured


def measure_networks(models: dict[str, nn.Module], backend: str, input_chw: tuple[int, int, int], batch: int,
                     timing: TimingSettings = NETWORK_TIMING) -> dict[str, dict[str, Any]]:
    """Each network's median and p90 ms, measured interleaved as ``foadx bench`` measures them
    (so a speedup compares networks timed under the same machine state)."""
    return measure_pairs(models, backend, input_chw, batch, 1, timing=timing)[0]


def measure_network(model: nn.Module, backend: str, input_chw: tuple[int, int, int], batch: int,
                    timing: TimingSettings = NETWORK_TIMING) -> dict[str, Any]:
    """The whole network's median and p90 ms."""
    return measure_networks({"network": model}, backend, input_chw, batch, timing)["network"]
