"""Commands that take a model to deployment: export, build-engine, verify, bench, report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from foadx.errors import BadInputError
from foadx.export import DEFAULT_ATOL, DEFAULT_RTOL
from foadx_cli import render
from foadx_cli.app import app, handles_errors
from foadx_cli.options import (
    AtolOption,
    ImagesOption,
    InputSizeOption,
    JsonOption,
    ModelOrArtifactArgument,
    ParityReportOption,
    QuietOption,
    RtolOption,
    StrictOption,
    VerifyDataOption,
    WeightsMapOption,
    WeightsOption,
    check_output_path,
    load_module,
    parse_input_size,
    verification_images,
)


@app.command("export")
@handles_errors
def export_command(
    model: ModelOrArtifactArgument,
    out: Annotated[Path, typer.Option(help="ONNX file to write (atomically).")],
    opset: Annotated[int, typer.Option(help="ONNX opset; >= 18 uses the dynamo exporter, older ones the legacy exporter.")] = 18,
    batch: Annotated[str, typer.Option(help="'dynamic' or a fixed batch size.")] = "dynamic",
    input_size: InputSizeOption = None,
    prelu_rewrite: Annotated[Optional[bool], typer.Option(help="Rewrite PReLU as relu(x) - a*relu(-x) (exact; faster on onnxruntime). Default: on, off with --trt (TensorRT fuses PReLU).")] = None,
    prelu_form: Annotated[str, typer.Option(help="auto, depthwise (stays in onnxruntime's NCHWc layout) or elementwise.")] = "auto",
    verify: Annotated[bool, typer.Option(help="Prove parity in onnxruntime before the file replaces --out.")] = True,
    data: VerifyDataOption = "demo",
    images: ImagesOption = 16,
    atol: AtolOption = DEFAULT_ATOL,
    rtol: RtolOption = DEFAULT_RTOL,
    strict: StrictOption = False,
    report: ParityReportOption = None,
    weights: WeightsOption = None,
    weights_map: WeightsMapOption = None,
    precision: Annotated[str, typer.Option(help="fp32 (the ONNX), int8 (also a Q/DQ ONNX: OUT with .int8.onnx), fp16 (engine only).")] = "fp32",
    calib_data: Annotated[str, typer.Option(help="int8 calibration images.")] = "demo",
    calib_images: Annotated[int, typer.Option(help="Number of int8 calibration images.")] = 256,
    trt: Annotated[bool, typer.Option("--trt", help="Also build a TensorRT engine (OUT with .engine) and check it against onnxruntime.")] = False,
    min_batch: Annotated[Optional[int], typer.Option(help="Engine profile: smallest batch (default 1; --batch N: N).")] = None,
    opt_batch: Annotated[Optional[int], typer.Option(help="Engine profile: batch tuned for.")] = None,
    max_batch: Annotated[Optional[int], typer.Option(help="Engine profile: largest batch.")] = None,
    workspace_gb: Annotated[Optional[float], typer.Option(help="TensorRT workspace limit, GiB.")] = None,
    timing_cache: Annotated[Optional[Path], typer.Option(help="TensorRT timing cache file (read and updated).")] = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Export MODEL_OR_ARTIFACT to one self-contained ONNX file, verified in onnxruntime; with
    --precision int8 also a Q/DQ ONNX; with --trt also a TensorRT engine."""
    from foadx.atomic import write_json
    from foadx.export import ParityFailedError, export_onnx

    check_output_path(out)
    if report is not None:
        check_output_path(report)
    if precision not in ("fp32", "fp16", "int8"):
        raise BadInputError(f"--precision must be fp32, fp16 or int8, got {precision!r}")
    if precision == "fp16" and not trt:
        raise BadInputError("--precision fp16 applies to the TensorRT engine: add --trt")
    if prelu_rewrite is None:
        from foadx.export.onnx_export import default_prelu_rewrite

        prelu_rewrite = default_prelu_rewrite("trt" if trt else "ort-cpu")
    network = load_module(model, weights, weights_map, input_size)
    real_images = verification_images(data, network, images) if verify or trt else None  # read once
    verify_options = {"atol": atol, "rtol": rtol, "strict": strict, "images": real_images}
    try:
        with render.status("exporting and verifying" if verify else "exporting", enabled=not quiet and not as_json):
            result = export_onnx(
                network, out, opset=opset, batch=batch, input_size=parse_input_size(input_size),
                prelu_rewrite=prelu_rewrite, prelu_form=prelu_form, verify=verify, verify_options=verify_options,
            )
    except ParityFailedError as error:
        if report is not None:
            write_json(report, error.report.to_json())
        raise
    if report is not None and result.parity is not None:
        write_json(report, result.parity.to_json())
    summary = result.to_json()
    deployed = out
    if precision == "int8":
        from foadx.export.quantize import quantize_int8

        deployed = out.with_name(out.stem + ".int8.onnx")
        summary["int8"] = quantize_int8(out, deployed, verification_images(calib_data, network, calib_images))
    if as_json and not trt:
        typer.echo(json.dumps(summary, indent=2))
    elif not quiet:
        render.export_summary(result)
        if "int8" in summary:
            render.int8_summary(summary["int8"])
    if trt:
        summary["engine"] = _build_and_check_engine(
            deployed, out.with_suffix(".engine"), precision,
            _engine_profile(batch, min_batch, opt_batch, max_batch), workspace_gb, timing_cache,
            real_images,
        )
        if as_json:
            typer.echo(json.dumps(summary, indent=2))
        elif not quiet:
            typer.echo(f"engine: {json.dumps(summary['engine'])}")


def _engine_profile(batch: str, min_batch: Optional[int], opt_batch: Optional[int], max_batch: Optional[int]):
    from foadx.export.onnx_export import parse_batch
    from foadx.export.tensorrt import EngineProfile

    fixed = parse_batch(batch)
    if fixed != "dynamic":
        if any(value is not None for value in (min_batch, opt_batch, max_batch)):
            raise BadInputError("--batch N fixes the engine's batch: drop --min/--opt/--max-batch")
        return EngineProfile.fixed(fixed)
    return EngineProfile(min_batch or 1, opt_batch or min_batch or 1, max_batch or max(opt_batch or 1, min_batch or 1))


def _build_and_check_engine(onnx_path: Path, engine_path: Path, precision: str, profile, workspace_gb, timing_cache,
                            images) -> dict:
    from foadx.export.engine_check import check_engine
    from foadx.export.tensorrt import EngineOptions, build_engine

    options = EngineOptions(precision=precision, profile=profile, workspace_gb=workspace_gb,
                            timing_cache=str(timing_cache) if timing_cache else None)
    sidecar = build_engine(onnx_path, engine_path, options)
    return {**sidecar, "parity": check_engine(engine_path, onnx_path, precision, images, profile)}


@app.command("build-engine")
@handles_errors
def build_engine_command(
    onnx_file: Annotated[Path, typer.Argument(help="The ONNX file (a Q/DQ file for int8).")],
    out: Annotated[Optional[Path], typer.Option(help="Engine file (default: the ONNX path with .engine).")] = None,
    precision: Annotated[str, typer.Option(help="fp32, fp16 or int8.")] = "fp16",
    batch: Annotated[str, typer.Option(help="'dynamic' (use the profile options) or a fixed batch size.")] = "dynamic",
    min_batch: Annotated[Optional[int], typer.Option(help="Profile: smallest batch.")] = None,
    opt_batch: Annotated[Optional[int], typer.Option(help="Profile: batch tuned for.")] = None,
    max_batch: Annotated[Optional[int], typer.Option(help="Profile: largest batch.")] = None,
    workspace_gb: Annotated[Optional[float], typer.Option(help="Workspace limit, GiB.")] = None,
    timing_cache: Annotated[Optional[Path], typer.Option(help="Timing cache file (read and updated).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Build a TensorRT engine from ONNX_FILE and check it against onnxruntime."""
    engine_path = out or onnx_file.with_suffix(".engine")
    check_output_path(engine_path)
    result = _build_and_check_engine(onnx_file, engine_path, precision, _engine_profile(batch, min_batch, opt_batch, max_batch),
                                     workspace_gb, timing_cache, None)
    typer.echo(json.dumps(result, indent=2) if as_json else f"wrote {engine_path}: {json.dumps(result)}")


@app.command("verify")
@handles_errors
def verify_command(
    onnx_file: Annotated[Path, typer.Argument(help="The ONNX file to check.")],
    against: Annotated[str, typer.Option(help="The PyTorch model or pruned artifact it must equal.")],
    data: VerifyDataOption = "demo",
    images: ImagesOption = 16,
    batch_sizes: Annotated[str, typer.Option(help="Batch sizes to compare at (a fixed-batch file uses its own).")] = "1,4,7",
    atol: AtolOption = DEFAULT_ATOL,
    rtol: RtolOption = DEFAULT_RTOL,
    strict: StrictOption = False,
    out: ParityReportOption = None,
    weights: WeightsOption = None,
    weights_map: WeightsMapOption = None,
    input_size: InputSizeOption = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Prove ONNX_FILE answers like the model: onnxruntime CPU vs torch fp32, exit 4 if not."""
    from foadx.atomic import write_json
    from foadx.bench import parse_batches
    from foadx.export import verify_onnx

    if out is not None:
        check_output_path(out)
    network = load_module(against, weights, weights_map, input_size)
    with render.status("verifying", enabled=not quiet and not as_json):
        parity = verify_onnx(
            onnx_file, network, atol=atol, rtol=rtol, strict=strict,
            batch_sizes=tuple(parse_batches(batch_sizes)), images=verification_images(data, network, images),
        )
    if out is not None:
        write_json(out, parity.to_json())
    if as_json:
        typer.echo(json.dumps(parity.to_json(), indent=2))
    elif not quiet:
        render.parity_table(parity.to_json())
    parity.raise_if_failed()


@app.command("bench")
@handles_errors
def bench_command(
    models: Annotated[Optional[list[str]], typer.Argument(help="Models to compare (artifact, .onnx or spec); speedups are against the first.")] = None,
    backend: Annotated[list[str], typer.Option(help="ort-cpu, torch-cpu, torch-cuda, torch-cuda-graph or trtexec (repeatable).")] = ["ort-cpu"],  # noqa: B006
    trtexec_log: Annotated[Optional[list[Path]], typer.Option(help="Ingest a trtexec log made elsewhere instead of measuring (repeatable).")] = None,
    label: Annotated[Optional[list[str]], typer.Option(help="Names for the --trtexec-log files, in order.")] = None,
    batch: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1",
    out: Annotated[Optional[Path], typer.Option(help="Write the latency report (JSON) here.")] = None,
    markdown: Annotated[Optional[Path], typer.Option(help="Also write the report as Markdown here.")] = None,
    warmup_ms: Annotated[float, typer.Option(help="Warm-up per configuration, milliseconds.")] = 200.0,
    duration_s: Annotated[float, typer.Option(help="Measured time per configuration, seconds.")] = 3.0,
    min_iterations: Annotated[int, typer.Option(help="Minimum timed iterations per configuration.")] = 10,
    rounds: Annotated[int, typer.Option(help="Interleaved rounds (the gate compares their medians).")] = 5,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads (default: the runtime's).")] = None,
    precision: Annotated[str, typer.Option(help="fp32 or fp16 (CUDA backends); fp32, fp16 or int8 for trtexec.")] = "fp32",
    channels_last: Annotated[bool, typer.Option(help="channels-last memory format (torch backends).")] = False,
    fold_bn: Annotated[bool, typer.Option(help="Fold BatchNorm into the convolutions (torch backends).")] = False,
    baseline: Annotated[Optional[Path], typer.Option(help="A previous report to gate against.")] = None,
    max_regression: Annotated[float, typer.Option(help="Allowed slowdown against --baseline, percent; exit 5 beyond.")] = 10.0,
    strict_env: Annotated[bool, typer.Option(help="Refuse a baseline from a different environment.")] = False,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Measure latency and throughput of MODELS, interleaved, and gate on a baseline."""
    from foadx.atomic import write_json, write_text
    from foadx.bench import bench_model, compare_to_baseline, parse_batches, run_bench
    from foadx.bench.run import report_from_trtexec_logs
    from foadx.runtime.trtexec import TrtexecOptions
    from foadx.report import read_report, render_markdown
    from foadx.runtime import SessionOptions, TimingSettings, get_backend

    for path in (out, markdown):
        if path is not None:
            check_output_path(path)
    batches = parse_batches(batch)
    previous = read_report(baseline) if baseline is not None else None
    if trtexec_log:
        if models:
            raise BadInputError("give either MODELS to measure or --trtexec-log files to ingest, not both")
        names = list(label or [])
        if names and len(names) != len(trtexec_log):
            raise BadInputError(f"{len(names)} --label for {len(trtexec_log)} --trtexec-log files")
        logs = list(zip(names or [path.stem for path in trtexec_log], trtexec_log))
        report = report_from_trtexec_logs(logs, batches[0], precision)  # --batch where a log does not say
    else:
        if not models:
            raise BadInputError("give at least one model to benchmark (or --trtexec-log files)")
        backends = [name.strip() for entry in backend for name in entry.split(",") if name.strip()]
        for name in backends:
            get_backend(name)
        trtexec_only = all(get_backend(name).external for name in backends)
        options = SessionOptions(precision="fp32" if trtexec_only else precision, threads=threads,
                                 channels_last=channels_last, fold_bn=fold_bn)
        settings = TimingSettings(warmup_ms, duration_s, min_iterations, rounds)
        entries = [bench_model(spec, spec if spec.endswith(".onnx") else load_module(spec, None, None, None))
                   for spec in models]
        with render.progress("measuring", enabled=not quiet and not as_json) as advance:
            report = run_bench(entries, backends, batches, options=options, settings=settings, progress=advance,
                               trtexec=TrtexecOptions(precision=precision))
    gate = compare_to_baseline(report, previous, max_regression, strict_env) if previous is not None else None
    if gate is not None:
        report["gate"] = gate.to_json()
    if out is not None:
        write_json(out, report)
    if markdown is not None:
        write_text(markdown, render_markdown(report))
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    elif not quiet:
        render.latency_table(report)
    if gate is not None:
        for warning in gate.warnings:
            typer.echo(f"foadx: warning: {warning}", err=True)
        gate.raise_if_failed()


@app.command("report")
@handles_errors
def report_command(
    report: Annotated[Path, typer.Argument(help="A foadx JSON report (latency or parity).")],
    out: Annotated[Optional[Path], typer.Option(help="Write the Markdown here instead of stdout.")] = None,
) -> None:
    """Render a foadx JSON report as Markdown."""
    from foadx.atomic import write_text
    from foadx.report import read_report, render_markdown

    text = render_markdown(read_report(report))
    if out is None:
        typer.echo(text, nl=False)
    else:
        check_output_path(out)
        write_text(out, text)
