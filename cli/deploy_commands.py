"""Commands that take a model to deployment: export, build-engine, verify, bench, report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

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
    GateOptions,
    ParitySettings,
    QuietOption,
    ReportOption,
    SeedOption,
    option_group,
    prepare_report,
    takes_gate_options,
    takes_model_options,
    takes_parity_options,
    takes_timing_options,
)

# Written out so that `foadx --help` need not import the runtimes; a test keeps it equal to
# foadx.runtime.BACKENDS.
BACKEND_HELP = "ort-cpu, openvino, torch-cpu, torch-cuda, torch-cuda-graph, torch-compile, trt or trtexec (repeatable or comma-separated)."
MinBatch = Annotated[Optional[int], typer.Option(help="Engine profile: smallest batch (default 1).")]
OptBatch = Annotated[Optional[int], typer.Option(help="Engine profile: batch tuned for.")]
MaxBatch = Annotated[Optional[int], typer.Option(help="Engine profile: largest batch.")]
WorkspaceOption = Annotated[Optional[float], typer.Option(help="TensorRT workspace limit, GiB.")]
TimingCacheOption = Annotated[Optional[Path], typer.Option(help="TensorRT timing cache file (read and updated).")]


def _int8_request(calib_data: str = "demo", calib_images: int = 256, calib_method: str = "minmax",
                  int8_per_channel: bool = True, int8_fp32_layers: Optional[str] = None):
    from foadx.tasks.export import Int8Request

    return Int8Request(calib_method, int8_per_channel, tuple(filter(None, (int8_fp32_layers or "").split(","))),
                       calib_data, calib_images)


takes_int8_options = option_group("int8", _int8_request, (
    ("calib_data", Annotated[str, typer.Option(help="int8 calibration images.")], "demo"),
    ("calib_images", Annotated[int, typer.Option(help="int8: images to read; the last quarter (at least 8) is held out to check the int8 file.")], 256),
    ("calib_method", Annotated[str, typer.Option(help="int8 calibration: minmax, entropy or percentile.")], "minmax"),
    ("int8_per_channel", Annotated[bool, typer.Option("--int8-per-channel/--int8-per-tensor", help="int8 weight scales per output channel.")], True),
    ("int8_fp32_layers", Annotated[Optional[str], typer.Option(help="int8: layers kept in fp32: first, last and/or node names, comma-separated.")], None)))


def _engine_request(trt: bool = False, min_batch: Optional[int] = None, opt_batch: Optional[int] = None,
                    max_batch: Optional[int] = None, workspace_gb: Optional[float] = None,
                    timing_cache: Optional[Path] = None):
    from foadx.tasks.export import EngineRequest

    return EngineRequest(min_batch, opt_batch, max_batch, workspace_gb, timing_cache) if trt else None


takes_engine_options = option_group("engine", _engine_request, (
    ("trt", Annotated[bool, typer.Option("--trt", help="Also build a TensorRT engine (OUT with .engine) and check it against onnxruntime.")], False),
    ("min_batch", MinBatch, None), ("opt_batch", OptBatch, None), ("max_batch", MaxBatch, None),
    ("workspace_gb", WorkspaceOption, None), ("timing_cache", TimingCacheOption, None)))


@app.command("export")
@handles_errors
@takes_model_options
@takes_parity_options
@takes_int8_options
@takes_engine_options
def export_command(
    model: ModelArgument,
    out: Annotated[Path, typer.Option(help="ONNX file to write (atomically); its folder is created if missing.")],
    opset: Annotated[Optional[int], typer.Option(help="ONNX opset (default 18); >= 18 uses the dynamo exporter, older ones the legacy exporter.")] = None,
    target: Annotated[Optional[str], typer.Option(help="ort-cpu, openvino, tensorrt, mobile or insightface: the form of the file (default ort-cpu; tensorrt with --trt).")] = None,
    batch: Annotated[Optional[str], typer.Option(help="'dynamic' or a fixed batch size (default: the target's; mobile: 1).")] = None,
    prelu_rewrite: Annotated[Optional[bool], typer.Option(help="Rewrite PReLU as relu(x) - a*relu(-x) (exact; faster on onnxruntime). Default: the target's (on for ort-cpu and insightface).")] = None,
    prelu_form: Annotated[str, typer.Option(help="auto, depthwise (stays in onnxruntime's NCHWc layout) or elementwise.")] = "auto",
    verify: Annotated[bool, typer.Option(help="Prove parity in onnxruntime before the file replaces --out.")] = True,
    data: DataOption = "demo",
    images: ImagesOption = 16,
    precision: Annotated[str, typer.Option(help="fp32 (the ONNX), int8 (also OUT with .int8.onnx in the target's int8 form; --min-cosine is then its floor, default 0.99), fp16 (engine only).")] = "fp32",
    seed: SeedOption = 0,
    report: ReportOption = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
    model_options: ModelOptions = ModelOptions(),
    parity_options: ParitySettings = ParitySettings(),
    int8: Any = None,
    engine: Any = None,
) -> None:
    """Export MODEL to one self-contained ONNX file, verified in onnxruntime.

    Example:
      foadx export out/tuned --out out/tuned.onnx

    With --precision int8 also a Q/DQ ONNX; with --trt also a TensorRT engine.
    """
    from foadx.atomic import prepare_output
    from foadx.provenance import provenance_of
    from foadx.tasks.export import ExportRequest, export_model

    request = ExportRequest(opset, target, batch, prelu_rewrite, prelu_form, verify, parity_options, precision, int8,
                            engine, prepare_report(report), data, images)
    request.options()  # every refusal (TensorRT and a GPU included) before any work
    prepare_output(out, "file")
    ref = model_options.resolve(model, seed)
    if not quiet and not as_json:  # --json carries it in the metadata's 'weights'
        render.notes(render.random_weights_note(provenance_of(ref.module()).plan.weights_origin))
    with render.status("exporting and verifying" if verify else "exporting", enabled=not quiet and not as_json):
        result = export_model(ref, out, request)
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
    """Build a TensorRT engine from ONNX_FILE and check it against onnxruntime.

    Example:
      foadx build-engine out/mfn.onnx --precision fp16 --batch 8
    """
    from foadx.atomic import prepare_output
    from foadx.runtime.engine_options import EngineOptions
    from foadx.tasks.export import build_and_check_engine, engine_profile

    engine_path = prepare_output(out or onnx_file.with_suffix(".engine"), "file")
    prepare_report(report)
    options = EngineOptions(precision, engine_profile(batch, min_batch, opt_batch, max_batch), workspace_gb,
                            str(timing_cache) if timing_cache else None)
    result = build_and_check_engine(onnx_file, engine_path, options, None)
    render.show(result, as_json=as_json, quiet=quiet, report=report,
                table=lambda data: typer.echo(f"wrote {engine_path}: {json.dumps(data)}"))


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
    parity_options: ParitySettings = ParitySettings(),
) -> None:
    """Prove ONNX_FILE answers like the model: onnxruntime (or OpenVINO) vs torch fp32, exit 4 if not.

    Example:
      foadx verify out/tuned.onnx --against out/tuned
    """
    from foadx.bench import parse_batches
    from foadx.resolve import resolve_model
    from foadx.tasks.export import model_images, verify_file

    parity_options.tolerances(precision)  # refused before any work
    prepare_report(report)
    batches = tuple(parse_batches(batch))
    if onnx_file.suffix != ".onnx":
        raise BadInputError(f"{onnx_file} is not an .onnx file")
    file_ref = resolve_model(str(onnx_file))
    ref = model_options.resolve(against, seed, defaults=file_ref.source)
    with render.status("verifying", enabled=not quiet and not as_json):
        parity = verify_file(onnx_file, ref, images=model_images(file_ref if file_ref.source else ref, data, images),
                             batches=batches, backend=backend, precision=precision, parity=parity_options)
    render.show(parity.to_json(), as_json=as_json, quiet=quiet, table=render.parity_table, report=report)
    parity.raise_if_failed()


@app.command("bench")
@handles_errors
@takes_model_options
@takes_timing_options
@takes_gate_options
def bench_command(
    models: Annotated[Optional[list[str]], typer.Argument(help="MODELs to compare (artifact, .onnx, .engine or spec); speedups are against the first.", metavar="MODEL...")] = None,
    backend: Annotated[list[str], typer.Option(help=BACKEND_HELP)] = ["ort-cpu"],  # noqa: B006
    trtexec_log: Annotated[Optional[list[Path]], typer.Option(help="Ingest a trtexec log made elsewhere instead of measuring (repeatable).")] = None,
    label: Annotated[Optional[list[str]], typer.Option(help="Names for the --trtexec-log files, in order.")] = None,
    batch: Annotated[Optional[str], typer.Option(help="Comma-separated batch sizes, e.g. 1,8 (default 1; a trtexec log: its own).")] = None,
    markdown: Annotated[Optional[Path], typer.Option(help="Also write the report as Markdown here.")] = None,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads (default: the runtime's).")] = None,
    precision: Annotated[str, typer.Option(help="fp32; fp16 (CUDA backends, trt); bf16 or int8 (openvino: its inference precision, recorded as run); fp16 or int8 for trtexec.")] = "fp32",
    channels_last: Annotated[bool, typer.Option(help="channels-last memory format (torch backends).")] = False,
    fold_bn: Annotated[bool, typer.Option(help="Fold BatchNorm into the convolutions (torch backends).")] = False,
    seed: SeedOption = 0,
    report: ReportOption = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
    model_options: ModelOptions = ModelOptions(),
    timing: Any = None,
    gate_options: GateOptions = GateOptions(),
) -> None:
    """Measure latency and throughput of MODELs, interleaved, and gate on a baseline.

    Example:
      foadx bench out/base out/tuned.onnx --batch 1,8 --report out/latency.json

    Speedups are against the first MODEL; --baseline REPORT --max-regression PCT exits 5 on a slowdown.
    """
    from foadx.bench import parse_batches
    from foadx.tasks.bench import BenchRequest, bench_models, bench_trtexec_logs

    for path in (report, markdown):
        prepare_report(path)
    batches, gate = parse_batches(batch or "1"), gate_options.gate()
    if trtexec_log:
        if models:
            raise BadInputError("give either MODELs to measure or --trtexec-log files to ingest, not both")
        names = list(label or [])
        if names and len(names) != len(trtexec_log):
            raise BadInputError(f"{len(names)} --label for {len(trtexec_log)} --trtexec-log files")
        logs = list(zip(names or [path.stem for path in trtexec_log], trtexec_log))
        if len(batches) > 1:
            raise BadInputError("a trtexec log holds one batch size: give one --batch, or none")
        outcome = bench_trtexec_logs(logs, batches[0] if batch else None, precision, gate=gate, report=report,
                                     markdown=markdown)
    else:
        backends = tuple(name.strip() for entry in backend for name in entry.split(",") if name.strip())
        request = BenchRequest(backends, tuple(batches), precision, threads, channels_last, fold_bn, timing,
                               model_options.build(seed))
        with render.progress("measuring", enabled=not quiet and not as_json) as advance:
            outcome = bench_models(models or [], request, gate=gate, report=report, markdown=markdown, progress=advance)
    render.show(outcome.report, as_json=as_json, quiet=quiet, table=render.latency_table)
    for warning in outcome.gate.warnings if outcome.gate is not None else ():
        typer.echo(f"foadx: warning: {warning}", err=True)
    outcome.raise_if_failed()


@app.command("report")
@handles_errors
def report_command(
    source: Annotated[Path, typer.Argument(help="A foadx JSON report: latency, parity, prune, eval, sweep or a pipeline's summary.json.", metavar="REPORT")],
    out: Annotated[Optional[Path], typer.Option(help="Write the Markdown here instead of stdout.")] = None,
    html: Annotated[Optional[Path], typer.Option(help="Also write one self-contained HTML page (figures embedded) here.")] = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Render a foadx JSON report as Markdown, and HTML with --html (--json: the validated report itself).

    Example:
      foadx report out/latency.json --html out/latency.html
    """
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
