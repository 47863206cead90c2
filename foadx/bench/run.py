"""``run_bench``: several models on several backends and batch sizes, measured interleaved.

Every (model, backend, batch) configuration is warmed up, then all are measured in the same
rounds (``foadx.runtime.timing``), so the speedup of each model over the first one is measured
under the same conditions, round by round (``foadx.bench.speedup``: the median of the per-round
ratios, its interval and what it supports). The report follows ``foadx/report/latency.schema.json``.
"""

from __future__ import annotations

import dataclasses
import datetime
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from foadx.bench.gate import check_precisions
from foadx.bench.models import BenchModel, bench_model, require_same_input
from foadx.bench.speedup import SPEEDUP_FIELDS, row_speedup
from foadx.bench.trtexec_report import trtexec_row
from foadx.export.loaders import ExportOptions
from foadx.errors import BadInputError
from foadx.resolve import BuildOptions, resolve_model
from foadx.report.kinds import envelope
from foadx.report.schema import validate_report
from foadx.runtime import (
    SessionOptions,
    TimingSettings,
    check_available,
    get_backend,
    measure_interleaved,
    open_session,
    summarize,
)
from foadx.runtime.environment import describe_environment, fingerprint
from foadx.runtime.engine_options import EngineOptions, EngineProfile
from foadx.runtime.trtexec import TrtexecOptions, read_trtexec_log, run_trtexec


def parse_batches(text: str) -> list[int]:
    """``"1,8,64"`` -> [1, 8, 64].

    Raises:
        BadInputError: empty, repeated, non-integer or non-positive sizes.
    """
    try:
        batches = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise BadInputError(f"batch sizes must be comma-separated integers, got {text!r}") from None
    if not batches or min(batches) < 1 or len(set(batches)) != len(batches):
        raise BadInputError(f"batch sizes must be distinct positive integers, got {text!r}")
    return batches


def add_speedups(results: list[dict[str, Any]], labels: list[str]) -> None:
    """Sets each row's speedup over ``labels[0]``'s row of the same backend and batch
    (``foadx.bench.speedup.row_speedup``): ``speedup_vs_first``, ``speedup_rounds``,
    ``speedup_interval``, ``speedup_coverage`` and ``speedup_verdict``; all None where that row
    is missing."""
    firsts = {(r["backend"], r["batch"]): r for r in results if r["model"] == labels[0]}
    for row in results:
        first = firsts.get((row["backend"], row["batch"]))
        row.update(row_speedup(first, row).fields() if first else dict.fromkeys(SPEEDUP_FIELDS))


def _trtexec_rows(models: list[BenchModel], batches: list[int], scratch: Path, export_options: ExportOptions,
                  settings: TimingSettings, trtexec: TrtexecOptions) -> list[dict[str, Any]]:
    rows = []
    for model in models:
        path = model.for_backend("trtexec", scratch, export_options, trtexec.engine)
        for batch in batches:
            engine = dataclasses.replace(trtexec.engine, profile=EngineProfile.tuned_for(batch, trtexec.engine.profile.max_batch))
            options = dataclasses.replace(trtexec, engine=engine, warmup_ms=settings.warmup_ms,
                                          duration_s=settings.duration_s, min_iterations=settings.min_iterations)
            summary = run_trtexec(path, _input_name(path), model.input_chw, options)
            row = trtexec_row(summary, model.label, batch, trtexec.engine.precision, "trtexec run here")
            rows.append({**row, "input_shape": [batch, *model.input_chw]})
    return rows


def _input_name(path: Path) -> str:
    import onnx

    return onnx.load(str(path), load_external_data=False).graph.input[0].name


def report_from_trtexec_logs(logs: list[tuple[str, Path]], batch: int | None, precision: str) -> dict[str, Any]:
    """A latency report from trtexec logs produced elsewhere: ``logs`` is [(label, path)], the
    first label the speedups' reference; ``batch`` is used where a log does not say it.

    Raises:
        BadInputError: a log cannot be read, holds no performance summary, or says no batch
            size and ``batch`` is None.
    """
    summaries = [(label, path, read_trtexec_log(path)) for label, path in logs]
    results = [trtexec_row(summary, label, batch, precision, str(path)) for label, path, summary in summaries]
    add_speedups(results, [logs[0][0]])
    versions = sorted({summary.tensorrt_version for _, _, summary in summaries if summary.tensorrt_version})
    environment = {"cpu": None, "cpu_count": None, "gpu": None, "gpu_driver": None,
                   "libraries": {"tensorrt": ", ".join(versions) or None}, "source": "trtexec logs"}
    environment["fingerprint"] = fingerprint(environment)
    settings = {"warmup_ms": None, "duration_s": None, "min_iterations": None, "rounds": None,
                "threads": None, "precision": precision, "source": "trtexec logs (trtexec's own settings)"}
    models = [{"label": label, "params": None, "macs": None, "bytes": {}} for label, _ in logs]
    return _latency_report(environment, settings, models, results)


def _latency_report(environment: dict[str, Any], settings: dict[str, Any], models: list[dict[str, Any]],
                    results: list[dict[str, Any]]) -> dict[str, Any]:
    """A latency report stamped now, checked against ``foadx/report/latency.schema.json``."""
    report = envelope("foadx.latency", {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "environment": environment, "settings": settings, "models": models, "results": results,
    })
    validate_report(report)
    check_precisions(report)
    return report


def engine_options_for(options: SessionOptions) -> EngineOptions:
    """The engines the ``trt`` backend builds run at the benchmark's own precision (a row
    labelled fp32 is an fp32 engine)."""
    return EngineOptions(precision=options.precision)


def run_bench(
    models: list[BenchModel],
    backends: list[str],
    batches: list[int],
    *,
    options: SessionOptions | None = None,
    settings: TimingSettings | None = None,
    export_options: ExportOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
    trtexec: TrtexecOptions | None = None,
) -> dict[str, Any]:
    """Measures every model x backend x batch interleaved and returns a latency report (a dict
    following ``foadx/report/latency.schema.json``; times in ms).

    The ``trt`` backend builds its engines at ``options.precision``; ``trtexec`` at its own
    options' precision (default: the same). ``progress(done, total)`` is called per timed round.

    Raises:
        BadInputError: no model, models of different input sizes, repeated labels, no or an
            unknown backend, or a model a backend cannot run.
        MissingDependencyError: a backend's GPU, TensorRT, OpenVINO or trtexec is absent
            (checked before any export or build).
    """
    options = options or SessionOptions()
    settings = settings or TimingSettings()
    export_options = export_options or ExportOptions()
    if not models:
        raise BadInputError("give at least one model to benchmark")
    require_same_input(models)
    labels = [model.label for model in models]
    if len(set(labels)) != len(labels):
        raise BadInputError(f"model labels must be distinct, got {labels}")
    entries = check_available(backends)
    builds_engines = any(entry.loads == "engine" or entry.external for entry in entries)
    engine_options = engine_options_for(options) if builds_engines else None
    trtexec = trtexec or (TrtexecOptions(engine=engine_options) if builds_engines else None)
    results = []
    with tempfile.TemporaryDirectory(prefix="foadx-bench-") as scratch:
        steps, backend_settings = {}, {}
        for backend in (entry for entry in entries if not entry.external):
            for model in models:
                loaded = model.for_backend(backend.name, Path(scratch), export_options, engine_options)
                session = open_session(backend.name, loaded, options, input_shape=(None, *model.input_chw))
                backend_settings[(model.label, backend.name)] = session.settings()
                for batch in batches:
                    steps[(model.label, backend.name, batch)] = session.timed_step(batch)
        samples = measure_interleaved(steps, settings, progress) if steps else {}
        models_by_label = {model.label: model for model in models}
        for (label, backend, batch), measured in samples.items():
            results.append({"model": label, "backend": backend, "batch": batch, "precision": options.precision,
                            "input_shape": [batch, *models_by_label[label].input_chw],
                            "backend_settings": backend_settings[(label, backend)], **summarize(measured, batch)})
        if any(entry.external for entry in entries):
            results += _trtexec_rows(models, batches, Path(scratch), export_options, settings, trtexec)
        environment = describe_environment()
    add_speedups(results, labels)
    recorded = {"warmup_ms": settings.warmup_ms, "duration_s": settings.duration_s,
                "min_iterations": settings.min_iterations, "rounds": settings.rounds,
                "threads": options.threads, "precision": options.precision, "channels_last": options.channels_last}
    return _latency_report(environment, recorded, [{"label": model.label, **model.sizes} for model in models], results)


def measure_models(
    models: list[str],
    backends: list[str],
    batches: list[int],
    *,
    build: BuildOptions | None = None,
    precision: str = "fp32",
    threads: int | None = None,
    channels_last: bool = False,
    fold_bn: bool = False,
    timing: TimingSettings | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """``foadx bench``: MODELs (resolved here; ``build`` applies to the specs among them, and its
    input size also runs artifacts at that size) on the named backends, measured interleaved;
    speedups against the first model, which must take the same input size as the others.
    ``timing``: warm-up, duration, minimum iterations and rounds (default ``TimingSettings()``).

    Returns:
        A latency report (``run_bench``).

    Raises:
        BadInputError: as ``run_bench``, or a MODEL that does not resolve.
        MissingDependencyError: a backend's requirement is absent (before any model is resolved).
    """
    check_available(backends)
    build = build or BuildOptions()
    refs = [resolve_model(text, build, specs_only=True) for text in models]
    if build.given and not any(ref.kind == "spec" for ref in refs):
        raise BadInputError(f"{', '.join(build.given)} apply to model specs, and none of the MODELs is one "
                            "(artifacts, ONNX files and engines are built already)")
    trtexec_only = all(get_backend(name).external for name in backends)
    options = SessionOptions(precision="fp32" if trtexec_only else precision, threads=threads,
                             channels_last=channels_last, fold_bn=fold_bn)
    settings = timing or TimingSettings()
    models = [bench_model(ref.text, ref, build.input_size) for ref in refs]
    trtexec = TrtexecOptions(engine=EngineOptions(precision=precision)) if trtexec_only or "trtexec" in backends else None
    return run_bench(models, backends, batches, options=options, settings=settings, progress=progress, trtexec=trtexec)
