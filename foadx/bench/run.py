"""``run_bench``: several models on several backends and batch sizes, measured interleaved.

Every (model, backend, batch) configuration is warmed up, then all are measured in the same
rounds (``foadx.runtime.timing``), so the speedup of each model over the first one is measured
under the same conditions. The report follows ``foadx/report/latency.schema.json``.
"""

from __future__ import annotations

import datetime
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from foadx._version import __version__
from foadx.bench.models import BenchModel
from foadx.errors import BadInputError
from foadx.report.schema import LATENCY_KIND, SCHEMA_VERSION, validate_report
from foadx.runtime import SessionOptions, TimingSettings, get_backend, measure_interleaved, open_session, summarize
from foadx.runtime.environment import describe_environment


def parse_batches(text: str) -> list[int]:
    """``"1,8,64"`` -> [1, 8, 64]; refuses empty, repeated or non-positive sizes."""
    try:
        batches = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise BadInputError(f"batch sizes must be comma-separated integers, got {text!r}") from None
    if not batches or min(batches) < 1 or len(set(batches)) != len(batches):
        raise BadInputError(f"batch sizes must be distinct positive integers, got {text!r}")
    return batches


def run_bench(
    models: list[BenchModel],
    backends: list[str],
    batches: list[int],
    *,
    options: SessionOptions | None = None,
    settings: TimingSettings | None = None,
    export_options: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Measures every model x backend x batch and returns a latency report (a dict)."""
    options = options or SessionOptions()
    settings = settings or TimingSettings()
    if not models:
        raise BadInputError("give at least one model to benchmark")
    labels = [model.label for model in models]
    if len(set(labels)) != len(labels):
        raise BadInputError(f"model labels must be distinct, got {labels}")
    for backend in backends:
        get_backend(backend)
    with tempfile.TemporaryDirectory(prefix="foadx-bench-") as scratch:
        steps, backend_settings = {}, {}
        for backend in backends:
            loads = get_backend(backend).loads
            for model in models:
                loaded = model.for_backend(loads, Path(scratch), export_options or {})
                session = open_session(backend, loaded, options, input_shape=(None, *model.input_shape))
                backend_settings[(model.label, backend)] = session.settings()
                for batch in batches:
                    steps[(model.label, backend, batch)] = session.timed_step(batch)
        samples = measure_interleaved(steps, settings, progress)
        environment = describe_environment()
    results = []
    for (label, backend, batch), measured in samples.items():
        summary = summarize(measured, batch)
        first = summarize(samples[(labels[0], backend, batch)], batch)["median_of_rounds_ms"]
        results.append({
            "model": label, "backend": backend, "batch": batch, "precision": options.precision,
            "backend_settings": backend_settings[(label, backend)], **summary,
            "speedup_vs_first": first / summary["median_of_rounds_ms"],
        })
    report = {
        "schema_version": SCHEMA_VERSION,
        "kind": LATENCY_KIND,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "foadx_version": __version__,
        "environment": environment,
        "settings": {
            "warmup_ms": settings.warmup_ms, "duration_s": settings.duration_s,
            "min_iterations": settings.min_iterations, "rounds": settings.rounds,
            "threads": options.threads, "precision": options.precision, "channels_last": options.channels_last,
        },
        "models": [{"label": model.label, **model.sizes} for model in models],
        "results": results,
    }
    validate_report(report)
    return report
