"""The bench task: measure MODELs interleaved (or ingest trtexec logs), gate against a baseline
report, and write the JSON and Markdown reports; the report is written before a failed gate
raises, so a CI job keeps the numbers that failed it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from foadx.errors import BadInputError
from foadx.runtime.timing import TimingSettings


@dataclass(frozen=True)
class Gate:
    """A regression gate: ``baseline`` (an earlier latency report), the slowdown allowed in
    percent (exit 5 beyond), whether another environment is refused, and whether a
    configuration only one report has is a warning instead of a failure."""

    baseline: Path
    max_regression: float = 10.0
    strict_env: bool = False
    allow_missing: bool = False


@dataclass(frozen=True)
class BenchRequest:
    """What to measure: backends x batches at ``precision``, and how (threads, channels-last and
    BN folding for torch backends, ``timing``: warm-up, duration, iterations, interleaved rounds).
    ``build`` (``foadx.resolve.BuildOptions``) applies to
    the specs among the MODELs."""

    backends: tuple[str, ...] = ("ort-cpu",)
    batches: tuple[int, ...] = (1,)
    precision: str = "fp32"
    threads: int | None = None
    channels_last: bool = False
    fold_bn: bool = False
    timing: TimingSettings = field(default_factory=TimingSettings)
    build: Any = None


@dataclass
class BenchOutcome:
    """The latency report (with its gate record) and the gate's result (None: no gate)."""

    report: dict[str, Any]
    gate: Any = None

    def raise_if_failed(self) -> None:
        """Raises ``RegressionError`` (exit 5) when the gate failed."""
        if self.gate is not None:
            self.gate.raise_if_failed()


def read_baseline(gate: Gate | None) -> dict[str, Any] | None:
    """The baseline report, read and validated before any measuring (None: no gate)."""
    if gate is None:
        return None
    from foadx.bench.gate import read_baseline as read_gate_baseline

    return read_gate_baseline(gate.baseline)


def bench_models(models: list[str], request: BenchRequest, *, gate: Gate | None = None,
                 report: Path | None = None, markdown: Path | None = None,
                 progress: Callable[[int, int], None] | None = None) -> BenchOutcome:
    """Measures MODELs (artifact folders, ONNX files, engines or specs; speedups against the
    first) on every backend and batch, interleaved; gates on ``gate``; writes ``report`` (JSON)
    and ``markdown`` when given.

    Raises:
        BadInputError: bad options, a missing model or a malformed baseline (exit 3);
        MissingDependencyError: a backend's runtime or hardware is missing (exit 6).
        A failed gate does not raise here: call ``BenchOutcome.raise_if_failed`` after reporting.
    """
    from foadx.bench import measure_models

    if not models:
        raise BadInputError("give at least one model to benchmark")
    baseline = read_baseline(gate)
    measured = measure_models(models, list(request.backends), list(request.batches), build=request.build,
                              precision=request.precision, threads=request.threads,
                              channels_last=request.channels_last, fold_bn=request.fold_bn,
                              timing=request.timing, progress=progress)
    return finish_bench(measured, gate, baseline, report, markdown)


def bench_trtexec_logs(logs: list[tuple[str, Path]], batch: int | None, precision: str, *,
                       gate: Gate | None = None, report: Path | None = None,
                       markdown: Path | None = None) -> BenchOutcome:
    """A latency report from trtexec logs measured elsewhere (``(label, path)`` pairs; ``batch``
    where a log does not record its own), gated and written like a measured one."""
    from foadx.bench.run import report_from_trtexec_logs

    baseline = read_baseline(gate)
    return finish_bench(report_from_trtexec_logs(logs, batch, precision), gate, baseline, report, markdown)


def finish_bench(measured: dict[str, Any], gate: Gate | None, baseline: dict[str, Any] | None,
                 report: Path | None, markdown: Path | None) -> BenchOutcome:
    """Compares ``measured`` to ``baseline`` (its gate record goes into the report) and writes
    the JSON and Markdown reports."""
    from foadx.atomic import write_json, write_text
    from foadx.bench import compare_to_baseline
    from foadx.report import render_markdown

    result = None
    if gate is not None and baseline is not None:
        result = compare_to_baseline(measured, baseline, gate.max_regression, gate.strict_env, gate.allow_missing)
        measured["gate"] = result.to_json()
    if report is not None:
        write_json(report, measured)
    if markdown is not None:
        write_text(markdown, render_markdown(measured))
    return BenchOutcome(measured, result)
