"""Commands that take a model to deployment: export, build-engine, verify, bench, report."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer

from foadx.errors import BadInputError
from foadx_cli import render
from foadx_cli.app import app, handles_errors
from foadx_cli.options import (
    BatchListOption,
    DataOption,
    ImagesOption,
    JsonOption,
    ModelArgument,
    ModelOptions,
    ParityOptions,
    QuietOption,
    ReportOption,
    SeedOption,
    finite,
    prepare_report,
    real_images,
    takes_model_options,
    takes_parity_options,
)

# Written out so that `foadx --help` need not import the runtimes; a test keeps it equal to
# foadx.runtime.BACKENDS.
BACKEND_HELP = "ort-cpu, openvino, torch-cpu, torch-cuda, torch-cuda-graph, trt or trtexec (repeatable or comma-separated)."
MinBatch = Annotated[Optional[int], typer.Option(help="Engine profile: smallest batch (default 1).")]
OptBatch = Annotated[Optional[int], typer.Option(help="Engine profile: batch tuned for.")]
MaxBatch = Annotated[Optional[int], typer.Option(help="Engine profile: largest batch.")]
WorkspaceOption = Annotated[Optional[float], typer.Option(help="TensorRT workspace limit, GiB.")]
TimingCacheOption = Annotated[Optional[Path], typer.Option(help="TensorRT timing cache file (read and updated).")]


@app.command("export")
@handles_errors
@takes_model_options
@takes_parity_options
def export_command(
    model: ModelArgument,
    out: Annotated[Path, typer.Option(help="ONNX file to write (atomically); its folder is created if missing.")],
    opset: Annotated[int, typer.Option(help="ONNX opset; >= 18 uses the dynamo exporter, older ones the legacy exporter.")] = 18,
    target: Annotated[Optional[str], typer.Option(help="ort-cpu, openvino, tensorrt, mobile or insightface: the form of the file (default ort-cpu; tensorrt with --trt).")] = None,
    batch: Annotated[Optional[str], typer.Option(help="'dynamic' or a fixed batch size (default: the target's; mobile: 1).")] = None,
    prelu_rewrite: Annotated[Optional[bool], typer.Option(help="Rewrite PReLU as relu(x) - a*relu(-x) (exact; faster on onnxruntime). Default: the target's (on for ort-cpu and insightface).")] = None,
    prelu_form: Annotated[str, typer.Option(help="auto, depthwise (stays in onnxruntime's NCHWc layout) or elementwise.")] = "auto",
    verify: Annotated[bool, typer.Option(help="Prove parity in onnxruntime before the file replaces --out.")] = True,
    data: DataOption = "demo",
    images: ImagesOption = 16,
    precision: Annotated[str, typer.Option(help="fp32 (the ONNX), int8 (also OUT with .int8.onnx in the target's int8 form; --min-cosine is then its floor, default 0.99), fp16 (engine only).")] = "fp32",
    calib_data: Annotated[str, typer.Option(help="int8 calibration images.")] = "demo",
    calib_images: Annotated[int, typer.Option(help="int8: images to read; the last quarter (at least 8) is held out to check the int8 file.")] = 256,
    calib_method: Annotated[str, typer.Option(help="int8 calibration: minmax, entropy or percentile.")] = "minmax",
    int8_per_channel: Annotated[bool, typer.Option("--int8-per-channel/--int8-per-tensor", help="int8 weight scales per output channel.")] = True,
    int8_fp32_layers: Annotated[Optional[str], typer.Option(help="int8: layers kept in fp32: first, last and/or node names, comma-separated.")] = None,
    trt: Annotated[bool, typer.Option("--trt", help="Also build a TensorRT engine (OUT with .engine) and check it against onnxruntime.")] = False,
    min_batch: MinBatch = None,
    opt_batch: OptBatch = None,
    max_batch: MaxBatch = None,
    workspace_gb: WorkspaceOption = None,
    timing_cache: TimingCacheOption = None,
    seed: SeedOption = 0,
    report: ReportOption = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
    model_options: ModelOptions = ModelOptions(),
    parity_options: ParityOptions = ParityOptions(),
) -> None:
    """Export MODEL to one self-contained ONNX file, verified in onnxruntime.

    With --precision int8 also a Q/DQ ONNX; with --trt also a TensorRT engine.
    """
    from foadx.atomic import prepare_output
    from foadx.export.loaders import ExportOptions
    from foadx.export.quantize import DEFAULT_MIN_COSINE, Int8Options
    from foadx.provenance import provenance_of
    from foadx.export.targets import get_target
    from foadx.runtime.engine_options import EngineOptions
    from foadx.workflow import DeployOptions, check_deploy_request, deploy, engine_profile

    finite(workspace_gb, "--workspace-gb")
    min_cosine = parity_options.min_cosine
    int8_floor = min_cosine if precision == "int8" and min_cosine is not None else DEFAULT_MIN_COSINE
    # with int8, --min-cosine is the int8 file's floor; the fp32 file keeps fp32's
    parity = (replace(parity_options, min_cosine=None) if precision == "int8" else parity_options).tolerances()
    int8 = Int8Options(calib_method, int8_per_channel, tuple(filter(None, (int8_fp32_layers or "").split(","))), int8_floor)
    prepare_output(out, "file")
    form = get_target(target or ("tensorrt" if trt else "ort-cpu"))
    batch = batch or form.batch
    engine = EngineOptions(precision, engine_profile(batch, min_batch, opt_batch, max_batch), workspace_gb,
                           str(timing_cache) if timing_cache else None) if trt else None
    options = DeployOptions(
        export=ExportOptions(opset, batch, None, prelu_rewrite, prelu_form, form.name), verify=verify,
        verify_options={"tolerances": parity, "strict": parity_options.strict}, precision=precision, int8=int8, trt=trt,
        engine=engine, report=prepare_report(report),
    )
    check_deploy_request(options)  # TensorRT and a GPU are checked before any work
    ref = model_options.resolve(model, seed)
    network = ref.module()
    verification = real_images(data, ref, images) if verify or trt else None
    if not quiet and not as_json:  # --json carries it in the metadata's 'weights'
        render.notes(render.random_weights_note(provenance_of(network).plan.weights_origin))
    with render.status("exporting and verifying" if verify else "exporting", enabled=not quiet and not as_json):
        result = deploy(network, out, options, verify_images=verification,
                        calibration_images=lambda: real_images(calib_data, ref, calib_images))
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=2))
    elif not quiet:
        render.export_summary(result.onnx)
        if result.int8 is not None:
            render.int8_summary(result.int8)
        if result.engine is not None:
            typer.echo(f"engine: {json.dumps(result.engine)}")


@app.command("build-engine")
@handles_errors
def build_engine_command(
    onnx_file: Annotated[Path, typer.Argument(help="The ONNX file (a Q/DQ file for int8).")],
    out: Annotated[Optional[Path], typer.Option(help="Engine file (default: the ONNX path with .engine).")] = None,
    precision: Annotated[str, typer.Option(help="fp32, fp16 or int8.")] = "fp16",
    batch: Annotated[str, typer.Option(help="'dynamic' (use the profile options) or a fixed batch size.")] = "dynamic",
    min_batch: MinBatch = None,
    opt_batch: OptBatch = None,
    max_batch: MaxBatch = None,
    workspace_gb: WorkspaceOption = None,
    timing_cache: TimingCacheOption = None,
    report: ReportOption = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Build a TensorRT engine from ONNX_FILE and check it against onnxruntime."""
    from foadx.atomic import prepare_output, write_json
    from foadx.runtime.engine_options import EngineOptions
    from foadx.workflow import build_and_check_engine, engine_profile

    finite(workspace_gb, "--workspace-gb")
    engine_path = prepare_output(out or onnx_file.with_suffix(".engine"), "file")
    prepare_report(report)
    options = EngineOptions(precision, engine_profile(batch, min_batch, opt_batch, max_batch), workspace_gb,
                            str(timing_cache) if timing_cache else None)
    result = build_and_check_engine(onnx_file, engine_path, options, None)
    if report is not None:
        write_json(report, result)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    elif not quiet:
        typer.echo(f"wrote {engine_path}: {json.dumps(result)}")


@app.command("verify")
@handles_errors
@takes_model_options
@takes_parity_options
def verify_command(
    onnx_file: Annotated[Path, typer.Argument(help="The ONNX file to check.")],
    against: Annotated[str, typer.Option(help="The MODEL it must equal (artifact or spec; a spec the file names is built as the file records it).")],
    data: DataOption = "demo",
    images: ImagesOption = 16,
    batch: BatchListOption = "1,4,7",
    backend: Annotated[str, typer.Option(help="ort-cpu or openvino: the runtime that runs ONNX_FILE.")] = "ort-cpu",
    precision: Annotated[str, typer.Option(help="fp32; openvino also bf16 (CPUs that have it) or int8 (a Q/DQ file). Sets the default floors.")] = "fp32",
    seed: SeedOption = 0,
    report: ReportOption = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
    model_options: ModelOptions = ModelOptions(),
    parity_options: ParityOptions = ParityOptions(),
) -> None:
    """Prove ONNX_FILE answers like the model: onnxruntime (or OpenVINO) vs torch fp32, exit 4 if not."""
    from foadx.atomic import write_json
    from foadx.bench import parse_batches
    from foadx.export import verify_onnx
    from foadx.resolve import resolve_model

    parity_tolerances = parity_options.tolerances(precision)
    prepare_report(report)
    batches = tuple(parse_batches(batch))
    if onnx_file.suffix != ".onnx":
        raise BadInputError(f"{onnx_file} is not an .onnx file")
    file_ref = resolve_model(str(onnx_file))
    ref = model_options.resolve(against, seed, defaults=file_ref.source)
    with render.status("verifying", enabled=not quiet and not as_json):
        parity = verify_onnx(onnx_file, ref.module(), tolerances=parity_tolerances, strict=parity_options.strict, batch_sizes=batches,
                             images=real_images(data, file_ref if file_ref.source else ref, images),
                             backend=backend, precision=precision)
    if report is not None:
        write_json(report, parity.to_json())
    if as_json:
        typer.echo(json.dumps(parity.to_json(), indent=2))
    elif not quiet:
        render.parity_table(parity.to_json())
    parity.raise_if_failed()


@app.command("bench")
@handles_errors
@takes_model_options
def bench_command(
    models: Annotated[Optional[list[str]], typer.Argument(help="MODELs to compare (artifact, .onnx, .engine or spec); speedups are against the first.", metavar="MODEL...")] = None,
    backend: Annotated[list[str], typer.Option(help=BACKEND_HELP)] = ["ort-cpu"],  # noqa: B006
    trtexec_log: Annotated[Optional[list[Path]], typer.Option(help="Ingest a trtexec log made elsewhere instead of measuring (repeatable).")] = None,
    label: Annotated[Optional[list[str]], typer.Option(help="Names for the --trtexec-log files, in order.")] = None,
    batch: BatchListOption = "1",
    markdown: Annotated[Optional[Path], typer.Option(help="Also write the report as Markdown here.")] = None,
    warmup_ms: Annotated[float, typer.Option(help="Warm-up per configuration, milliseconds.")] = 200.0,
    duration_s: Annotated[float, typer.Option(help="Measured time per configuration, seconds.")] = 3.0,
    min_iterations: Annotated[int, typer.Option(help="Minimum timed iterations per configuration.")] = 10,
    rounds: Annotated[int, typer.Option(help="Interleaved rounds (the gate compares their medians).")] = 5,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads (default: the runtime's).")] = None,
    precision: Annotated[str, typer.Option(help="fp32; fp16 (CUDA backends, trt); bf16 or int8 (openvino: its inference precision, recorded as run); fp16 or int8 for trtexec.")] = "fp32",
    channels_last: Annotated[bool, typer.Option(help="channels-last memory format (torch backends).")] = False,
    fold_bn: Annotated[bool, typer.Option(help="Fold BatchNorm into the convolutions (torch backends).")] = False,
    baseline: Annotated[Optional[Path], typer.Option(help="A previous report to gate against.")] = None,
    max_regression: Annotated[float, typer.Option(help="Allowed slowdown against --baseline, percent; exit 5 beyond.")] = 10.0,
    strict_env: Annotated[bool, typer.Option(help="Refuse a baseline from a different environment.")] = False,
    allow_missing: Annotated[bool, typer.Option(help="A configuration only one of this run and --baseline has is a warning, not a failure.")] = False,
    seed: SeedOption = 0,
    report: ReportOption = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
    model_options: ModelOptions = ModelOptions(),
) -> None:
    """Measure latency and throughput of MODELs, interleaved, and gate on a baseline."""
    from foadx.atomic import write_json, write_text
    from foadx.bench import compare_to_baseline, measure_models, parse_batches
    from foadx.bench.run import report_from_trtexec_logs
    from foadx.report import read_report, render_markdown

    for name, value in (("--warmup-ms", warmup_ms), ("--duration-s", duration_s), ("--max-regression", max_regression)):
        finite(value, name)
    for path in (report, markdown):
        prepare_report(path)
    batches = parse_batches(batch)
    previous = read_report(baseline) if baseline is not None else None
    if trtexec_log:
        if models:
            raise BadInputError("give either MODELs to measure or --trtexec-log files to ingest, not both")
        names = list(label or [])
        if names and len(names) != len(trtexec_log):
            raise BadInputError(f"{len(names)} --label for {len(trtexec_log)} --trtexec-log files")
        logs = list(zip(names or [path.stem for path in trtexec_log], trtexec_log))
        result = report_from_trtexec_logs(logs, batches[0], precision)  # --batch where a log does not say
    else:
        if not models:
            raise BadInputError("give at least one MODEL to benchmark (or --trtexec-log files)")
        backends = [name.strip() for entry in backend for name in entry.split(",") if name.strip()]
        with render.progress("measuring", enabled=not quiet and not as_json) as advance:
            result = measure_models(
                models, backends, batches, build=model_options.build(seed),
                precision=precision, threads=threads, channels_last=channels_last, fold_bn=fold_bn,
                timing=(warmup_ms, duration_s, min_iterations, rounds), progress=advance,
            )
    gate = (compare_to_baseline(result, previous, max_regression, strict_env, allow_missing)
            if previous is not None else None)
    if gate is not None:
        result["gate"] = gate.to_json()
    if report is not None:
        write_json(report, result)
    if markdown is not None:
        write_text(markdown, render_markdown(result))
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    elif not quiet:
        render.latency_table(result)
    if gate is not None:
        for warning in gate.warnings:
            typer.echo(f"foadx: warning: {warning}", err=True)
        gate.raise_if_failed()


@app.command("report")
@handles_errors
def report_command(
    source: Annotated[Path, typer.Argument(help="A foadx JSON report: latency, parity, prune, eval, sweep or a pipeline's summary.json.", metavar="REPORT")],
    out: Annotated[Optional[Path], typer.Option(help="Write the Markdown here instead of stdout.")] = None,
    html: Annotated[Optional[Path], typer.Option(help="Also write one self-contained HTML page (figures embedded) here.")] = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Render a foadx JSON report as Markdown, and HTML with --html (--json: the validated report itself)."""
    from foadx.atomic import prepare_output, write_text
    from foadx.report import read_report, render_markdown

    for path in (out, html):
        if path is not None:
            prepare_output(path, "file")
    loaded = read_report(source)
    if html is not None:
        from foadx.report.html import render_html

        write_text(html, render_html(loaded))
    if as_json:
        typer.echo(json.dumps(loaded, indent=2))
        return
    text = render_markdown(loaded)
    if out is not None:
        write_text(out, text)
    elif not quiet:
        typer.echo(text, nl=False)
