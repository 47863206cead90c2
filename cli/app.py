"""The ``foadx`` command line: a thin skin over the library.

Every command turns foadx's exceptions into one line on stderr and the exit codes of
DESIGN.md (3 bad input, 4 check failed, 5 regression, 6 missing dependency/hardware, 1 other).
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from foadx._version import __version__
from foadx.errors import BadInputError, FoadxError
from foadx.export import DEFAULT_ATOL, DEFAULT_RTOL
from foadx_cli import render

ModelArgument = Annotated[str, typer.Argument(help="Zoo name, torchvision:NAME, pkg.module:fn or file.py:fn.")]
WeightsOption = Annotated[Optional[Path], typer.Option(help="State dict to load (weights_only).")]
WeightsMapOption = Annotated[Optional[Path], typer.Option(help="JSON regex -> replacement for keys.")]
InputSizeOption = Annotated[Optional[str], typer.Option(help="H or HxW (default: the model's).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]
ModelOrArtifactArgument = Annotated[
    str, typer.Argument(help="Pruned-artifact directory, or zoo name / torchvision:NAME / pkg.module:fn / file.py:fn.")
]

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="foadx: prune CNNs with FOAD and take them to a fast, verified deployment.",
)


def _fail(message: str, code: int) -> None:
    typer.echo(f"foadx: error: {message}", err=True)
    raise typer.Exit(code)


def handles_errors(command: Callable) -> Callable:
    """One line and a distinct exit code instead of a traceback (FOADX_DEBUG=1 shows it)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except FoadxError as error:
            _fail(str(error), error.exit_code)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as error:  # the last resort: still one line, exit 1
            if os.environ.get("FOADX_DEBUG"):
                raise
            _fail(f"unexpected {type(error).__name__}: {error} (FOADX_DEBUG=1 shows the traceback)", 1)

    return wrapper


def _version(value: bool) -> None:
    if value:
        typer.echo(f"foadx {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """foadx: prune CNNs with FOAD and take them to a fast, verified deployment."""


def parse_input_size(text: Optional[str]) -> Optional[tuple[int, int]]:
    if text is None:
        return None
    parts = text.lower().split("x")
    try:
        values = [int(part) for part in parts]
    except ValueError:
        raise BadInputError(f"--input-size must be H or HxW, got {text!r}") from None
    if len(values) not in (1, 2) or min(values) < 1:
        raise BadInputError(f"--input-size must be H or HxW with positive sizes, got {text!r}")
    return (values[0], values[-1])


def parse_model_args(pairs: Optional[list[str]]) -> dict[str, Any]:
    """``KEY=VALUE`` factory arguments; VALUE is read as JSON when it parses, else as a string."""
    kwargs: dict[str, Any] = {}
    for pair in pairs or []:
        key, separator, value = pair.partition("=")
        if not separator or not key.isidentifier():
            raise BadInputError(f"--model-arg must be KEY=VALUE, got {pair!r}")
        try:
            kwargs[key] = json.loads(value)
        except json.JSONDecodeError:
            kwargs[key] = value
    return kwargs


ModelArgOption = Annotated[
    Optional[list[str]], typer.Option(help="Factory argument KEY=VALUE, e.g. embedding_size=10 (repeatable).")
]


def _load_model(spec: str, weights: Optional[Path], weights_map: Optional[Path], input_size: Optional[str],
                model_args: Optional[list[str]] = None, seed: int = 0):
    """Builds a model; without --weights its random initialisation is seeded, so the same
    command gives the same result."""
    import torch

    from foadx.models import build_model, load_weights
    from foadx.models.registry import read_weights_map

    torch.manual_seed(seed)
    model = build_model(spec, parse_input_size(input_size), **parse_model_args(model_args))
    if weights is not None:
        load_weights(model, weights, read_weights_map(weights_map) if weights_map else None)
    elif weights_map is not None:
        raise BadInputError("--weights-map needs --weights")
    return model


@app.command("models")
@handles_errors
def models_command(
    as_json: JsonOption = False,
) -> None:
    """List the model zoo."""
    from foadx.models import ZOO

    rows = [
        {"name": name, "input_size": list(entry.input_size), "description": entry.description}
        for name, entry in ZOO.items()
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        render.models_table(rows)


@app.command("inspect")
@handles_errors
def inspect_command(
    model: ModelArgument,
    weights: WeightsOption = None,
    weights_map: WeightsMapOption = None,
    input_size: InputSizeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a model's prunable channel groups, widths, params and MACs."""
    import torch

    from foadx.models import model_source
    from foadx.prune import inspect_model

    network = _load_model(model, weights, weights_map, input_size)
    source = model_source(network)
    info = inspect_model(network, torch.zeros(2, 3, *source.input_size))
    info["model"] = model
    if as_json:
        typer.echo(json.dumps(info, indent=2))
    else:
        render.inspect_table(info)


@app.command("prune")
@handles_errors
def prune_command(
    model: ModelOrArtifactArgument,
    data: Annotated[str, typer.Option(help="Calibration images: folder, CIFAR batches, .npy/.npz or 'demo'.")],
    out: Annotated[Path, typer.Option(help="Artifact directory to write (plan.json + weights.pt).")],
    t: Annotated[Optional[int], typer.Option("--t", help="FOAD t (neighbours one kept channel may remove); paper mode default 2.")] = None,
    s: Annotated[Optional[float], typer.Option("--s", help="FOAD similarity threshold s; paper mode default 0.5.")] = None,
    ratio: Annotated[Optional[float], typer.Option(help="Fraction of channels removed per group, in (0, 1).")] = None,
    ratios: Annotated[Optional[Path], typer.Option(help="JSON: group name -> ratio.")] = None,
    flops_target: Annotated[Optional[float], typer.Option(help="Fraction of MACs to remove, one (t, s) for all groups.")] = None,
    params_target: Annotated[Optional[float], typer.Option(help="Fraction of params to remove.")] = None,
    round_to: Annotated[int, typer.Option(help="Round kept widths up to a multiple (8 for fp16 tensor cores).")] = 1,
    criterion: Annotated[str, typer.Option(help="foad, l1, random or hrank.")] = "foad",
    include_coupled: Annotated[bool, typer.Option(help="Also prune residual-coupled groups.")] = False,
    exclude: Annotated[Optional[list[str]], typer.Option(help="Group name to leave whole (repeatable).")] = None,
    images: Annotated[int, typer.Option(help="Number of calibration images.")] = 128,
    batch_size: Annotated[int, typer.Option(help="Calibration batch size.")] = 32,
    input_size: InputSizeOption = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    weights: WeightsOption = None,
    weights_map: WeightsMapOption = None,
    recalibrate_bn: Annotated[bool, typer.Option(help="Re-estimate BN statistics after pruning.")] = False,
    model_arg: ModelArgOption = None,
    seed: Annotated[int, typer.Option(help="Seed for sampling images and the random criterion.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or table.")] = False,
) -> None:
    """Prune MODEL with FOAD (or a baseline criterion) and write a pruned-model artifact."""
    import foadx
    from foadx.data import calibration_images
    from foadx.models import model_source

    if not out.parent.is_dir():
        raise BadInputError(f"output folder does not exist: {out.parent}")
    if out.exists() and not out.is_dir():
        raise BadInputError(f"--out {out} exists and is not a directory")
    group_ratios = render.read_ratios(ratios) if ratios else None
    network = _load_module(model, weights, weights_map, input_size, model_arg)
    source = model_source(network)
    calibration = calibration_images(data, images, source.input_size, source.mean, source.std, batch_size, seed)
    with render.progress("calibration batches", enabled=not quiet and not as_json) as advance:
        result = foadx.prune(
            network, calibration, criterion=criterion, t=t, s=s, ratio=ratio, ratios=group_ratios,
            flops_target=flops_target, params_target=params_target, round_to=round_to,
            include_coupled=include_coupled, exclude=exclude or (), recalibrate_bn=recalibrate_bn,
            batch_size=batch_size, seed=seed, device=device, progress=advance,
            calibration={**calibration.describe(), "data": data, "seed": seed},
        )
    if weights is not None:
        result.plan["model"]["weights"] = str(weights)
    result.save(out)
    result.report["out"] = str(out)
    result.report["weights_bytes"]["file"] = (out / "weights.pt").stat().st_size
    if as_json:
        typer.echo(json.dumps(result.report, indent=2))
    elif not quiet:
        render.prune_report(result.report)


AtolOption = Annotated[float, typer.Option(help="Absolute tolerance; an element fails only where atol AND rtol are exceeded.")]
RtolOption = Annotated[float, typer.Option(help="Relative tolerance (|a-r|/|r|, Polygraphy's definition).")]
VerifyDataOption = Annotated[str, typer.Option("--data", help="Real images to compare on besides random inputs ('none' to skip).")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or table.")]
ImagesOption = Annotated[int, typer.Option(help="Real images used for parity.")]
StrictOption = Annotated[bool, typer.Option(help="Fail when a deployability check fails.")]
ParityReportOption = Annotated[Optional[Path], typer.Option(help="Write the parity report (JSON) here.")]


def _load_module(spec: str, weights: Optional[Path], weights_map: Optional[Path], input_size: Optional[str],
                 model_args: Optional[list[str]] = None, seed: int = 0):
    """A pruned artifact (directory with plan.json) or a model spec, on the CPU."""
    from foadx.prune import is_artifact, load_pruned

    if is_artifact(spec):
        if weights is not None or input_size is not None or model_args:
            raise BadInputError("--weights, --input-size and --model-arg do not apply to a pruned artifact")
        return load_pruned(spec, device="cpu")
    if spec.endswith(".onnx"):
        raise BadInputError(f"{spec} is an ONNX file; this needs the PyTorch model or pruned artifact")
    return _load_model(spec, weights, weights_map, input_size, model_args, seed)


def _verification_images(data: str, model, count: int):
    """Real preprocessed images for parity, as one float32 array (None for --data none)."""
    import torch

    from foadx.data import calibration_images
    from foadx.models import model_source

    if data == "none":
        return None
    source = model_source(model)
    images = calibration_images(data, count, source.input_size, source.mean, source.std, count, 0)
    return torch.cat(list(images)).numpy()


def _check_output_path(path: Path) -> None:
    if not path.parent.is_dir():
        raise BadInputError(f"output folder does not exist: {path.parent}")


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

    _check_output_path(out)
    if report is not None:
        _check_output_path(report)
    if precision not in ("fp32", "fp16", "int8"):
        raise BadInputError(f"--precision must be fp32, fp16 or int8, got {precision!r}")
    if precision == "fp16" and not trt:
        raise BadInputError("--precision fp16 applies to the TensorRT engine: add --trt")
    if prelu_rewrite is None:
        from foadx.export.onnx_export import default_prelu_rewrite

        prelu_rewrite = default_prelu_rewrite("trt" if trt else "ort-cpu")
    network = _load_module(model, weights, weights_map, input_size)
    verify_options = {"atol": atol, "rtol": rtol, "strict": strict,
                      "images": _verification_images(data, network, images) if verify else None}
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
        summary["int8"] = quantize_int8(out, deployed, _verification_images(calib_data, network, calib_images))
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
            _verification_images(data, network, images) if data != "none" else None,
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
    _check_output_path(engine_path)
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
        _check_output_path(out)
    network = _load_module(against, weights, weights_map, input_size)
    with render.status("verifying", enabled=not quiet and not as_json):
        parity = verify_onnx(
            onnx_file, network, atol=atol, rtol=rtol, strict=strict,
            batch_sizes=tuple(parse_batches(batch_sizes)), images=_verification_images(data, network, images),
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
            _check_output_path(path)
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
        entries = [bench_model(spec, spec if spec.endswith(".onnx") else _load_module(spec, None, None, None))
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
        _check_output_path(out)
        write_text(out, text)


TaskOption = Annotated[str, typer.Option(help="classify (top-1) or face (margin head / verification).")]


@app.command("finetune")
@handles_errors
def finetune_command(
    model: ModelOrArtifactArgument,
    data: Annotated[str, typer.Option(help="demo, CIFAR batches, class folders (train/ val/) or insightface train.rec.")],
    out: Annotated[Path, typer.Option(help="Directory: plan.json + weights.pt, checkpoint.pt, metrics.jsonl.")],
    task: TaskOption = "classify",
    epochs: Annotated[int, typer.Option(help="Epochs.")] = 1,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 0.05,
    batch_size: Annotated[int, typer.Option(help="Batch size per process.")] = 64,
    schedule: Annotated[str, typer.Option(help="cosine, or step (x0.1 at 50% and 75%).")] = "cosine",
    optimizer: Annotated[str, typer.Option(help="sgd (Nesterov, momentum 0.9) or adamw.")] = "sgd",
    weight_decay: Annotated[Optional[float], typer.Option(help="Base decay; 10x after the GDConv, none on BN/bias/PReLU (default 4e-5 face, 5e-4 classify).")] = None,
    head: Annotated[str, typer.Option(help="Face task: arcface or cosface.")] = "arcface",
    margin: Annotated[Optional[float], typer.Option(help="Margin m (default 0.5 arcface, 0.35 cosface).")] = None,
    scale: Annotated[float, typer.Option(help="Scale s of the margin head.")] = 64.0,
    margin_warmup_epochs: Annotated[int, typer.Option(help="Ramp the margin up over this many epochs.")] = 0,
    distill_from: Annotated[Optional[str], typer.Option(help="Teacher (usually the unpruned model) for distillation.")] = None,
    amp: Annotated[bool, typer.Option(help="Mixed precision (fp16 on CUDA, bf16 on CPU).")] = False,
    channels_last: Annotated[bool, typer.Option(help="channels-last memory format.")] = False,
    flip: Annotated[bool, typer.Option(help="Random horizontal flips.")] = True,
    seed: Annotated[int, typer.Option(help="Seed of data order and augmentation.")] = 0,
    workers: Annotated[int, typer.Option(help="DataLoader worker processes.")] = 0,
    steps_per_epoch: Annotated[Optional[int], typer.Option(help="Cap steps per epoch (smoke runs).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/checkpoint.pt.")] = False,
    eval_data: Annotated[Optional[str], typer.Option(help="Evaluate after each epoch on this (test split / pairs).")] = None,
    input_size: InputSizeOption = None,
    model_arg: ModelArgOption = None,
    weights: WeightsOption = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Fine-tune MODEL_OR_ARTIFACT; also runs under torchrun (DDP: NCCL on GPUs, gloo on CPUs)."""
    from dataclasses import asdict

    from foadx.data.labeled import open_labeled
    from foadx.prune import save_trained
    from foadx.train import FinetuneConfig, finetune

    config = FinetuneConfig(
        task=task, epochs=epochs, lr=lr, batch_size=batch_size, schedule=schedule, optimizer=optimizer,
        weight_decay=weight_decay, head=head, margin=margin, scale=scale, margin_warmup_epochs=margin_warmup_epochs,
        amp=amp, channels_last=channels_last, flip=flip, seed=seed, workers=workers, steps_per_epoch=steps_per_epoch,
    )
    config.validate()
    network = _load_module(model, weights, None, input_size, model_arg, seed)
    teacher = _load_module(distill_from, None, None, input_size, None).eval() if distill_from else None
    training_data = open_labeled(data, "train", task)
    evaluate = _epoch_evaluator(eval_data, task) if eval_data else None
    with render.training_progress(enabled=not quiet and not as_json) as advance:
        history = finetune(network, training_data, out, config, resume=resume, teacher=teacher,
                           evaluate=evaluate, progress=advance, device=device)
    from foadx.train.distributed import Distributed

    processes = Distributed.from_environment(device)
    if processes.is_main:
        network.to("cpu")
        save_trained(network, out, {"config": asdict(config), "data": data, "from": model, "epochs": history})
        if as_json:
            typer.echo(json.dumps(history, indent=2))
        elif not quiet:
            render.training_table(history, out)
    processes.close()


def _epoch_evaluator(eval_data: str, task: str):
    from foadx.evaluate.runner import evaluate_model

    return lambda network: evaluate_model(network, eval_data, task).summary()


@app.command("eval")
@handles_errors
def eval_command(
    model: Annotated[str, typer.Argument(help="Pruned artifact, model spec, or an ONNX file (run in onnxruntime).")],
    data: Annotated[str, typer.Option(help="classify: test split (demo, CIFAR, folders); face: demo, a .bin or an LFW folder.")],
    task: TaskOption = "classify",
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = 128,
    far: Annotated[float, typer.Option(help="Face: report TAR at this FAR.")] = 1e-3,
    out: Annotated[Optional[Path], typer.Option(help="Write the result (JSON) here.")] = None,
    input_size: InputSizeOption = None,
    model_arg: ModelArgOption = None,
    weights: WeightsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Top-1 (classify) or 10-fold face verification with TAR@FAR (face)."""
    from foadx.atomic import write_json
    from foadx.evaluate.runner import evaluate_model

    if out is not None:
        _check_output_path(out)
    target = Path(model) if model.endswith(".onnx") else _load_module(model, weights, None, input_size, model_arg)
    result = evaluate_model(target, data, task, batch_size=batch_size, far_target=far)
    report = {"model": model, "data": data, "task": task, **result.to_json()}
    if out is not None:
        write_json(out, report)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        typer.echo(result.line())


def main() -> None:
    app(prog_name="foadx")


if __name__ == "__main__":
    sys.exit(main())
