"""Commands about models and pruning: models, inspect, prune."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from foadx_cli import render
from foadx_cli.app import app, handles_errors
from foadx_cli.options import (
    takes_threads_option,
    DataOption,
    DeviceOption,
    ForceOption,
    ImagesOption,
    PROFILING_BACKEND_HELP,
    LatencyOptions,
    JsonOption,
    ModelArgument,
    ModelOptions,
    QuietOption,
    ReportOption,
    SeedOption,
    prepare_report,
    takes_latency_options,
    takes_model_options,
)

# The registry's names, written out so that `foadx --help` need not import torch; a test keeps
# this line equal to foadx.pruning.CRITERIA.
CRITERION_HELP = ("foad: FOAD feature-map similarity (the method); l1: filter L1 norm (Li et al. 2017); "
                  "random: seeded random channels; hrank: mean feature-map rank (Lin et al. 2020).")


@app.command("models")
@handles_errors
def models_command(as_json: JsonOption = False, quiet: QuietOption = False) -> None:
    """List the model zoo.

    Example:
      foadx models
    """
    from foadx.models import ZOO

    rows = [
        {"name": name, "input_size": list(entry.input_size), "task": entry.task, "description": entry.description}
        for name, entry in ZOO.items()
    ]
    render.show(rows, as_json=as_json, quiet=quiet, table=render.models_table)


@app.command("inspect")
@handles_errors
@takes_model_options
def inspect_command(
    model: ModelArgument,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
    model_options: ModelOptions = ModelOptions(),
) -> None:
    """Show a model's channel groups, widths, params and MACs.

    Example:
      foadx inspect mobilefacenet

    An ONNX file or engine: its input, outputs, opset and metadata.
    """
    from foadx.inspection import inspect_ref

    ref = model_options.resolve(model)
    render.show(inspect_ref(ref), as_json=as_json, quiet=quiet, table=render.inspect_table)


@app.command("prune")
@handles_errors
@takes_threads_option
@takes_model_options
@takes_latency_options
def prune_command(
    model: ModelArgument,
    data: DataOption,
    out: Annotated[Path, typer.Option(help="Artifact folder to write (plan.json + weights.pt); created if missing.")],
    t: Annotated[Optional[int], typer.Option("--t", help="FOAD t (neighbours one kept channel may remove); paper mode default 2.")] = None,
    s: Annotated[Optional[float], typer.Option("--s", help="FOAD similarity threshold s; paper mode default 0.5.")] = None,
    ratio: Annotated[Optional[float], typer.Option(help="Fraction of channels removed per group, in (0, 1).")] = None,
    ratios: Annotated[Optional[Path], typer.Option(help="JSON: group name -> ratio.")] = None,
    flops_target: Annotated[Optional[float], typer.Option(help="Fraction of MACs to remove, one (t, s) for all groups.")] = None,
    params_target: Annotated[Optional[float], typer.Option(help="Fraction of params to remove.")] = None,
    latency_target: Annotated[Optional[str], typer.Option(help="Prune to a measured latency on --backend: 2.0ms, or a speedup such as 2.5x; or several targets at once as BACKEND[@PRECISION]=T pairs, e.g. 'ort-cpu=1.5x openvino=1.4x'.")] = None,
    round_to: Annotated[Optional[int], typer.Option(help="Round kept widths up to a multiple (8 for fp16 tensor cores); with --latency-target the legal width step (default 16 on CPUs, 8 on CUDA).")] = None,
    criterion: Annotated[str, typer.Option(help=CRITERION_HELP)] = "foad",
    include_coupled: Annotated[bool, typer.Option(help="Also prune residual-coupled groups.")] = False,
    exclude: Annotated[Optional[list[str]], typer.Option(help="Group name to leave whole (repeatable).")] = None,
    images: ImagesOption = 128,
    batch_size: Annotated[int, typer.Option(help="Calibration batch size.")] = 32,
    device: DeviceOption = "auto",
    recalibrate_bn: Annotated[bool, typer.Option(help="Re-estimate BN statistics after pruning.")] = False,
    seed: SeedOption = 0,
    force: ForceOption = False,
    report: ReportOption = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
    model_options: ModelOptions = ModelOptions(),
    latency_options: LatencyOptions = LatencyOptions(),
) -> None:
    """Prune MODEL with FOAD (or a baseline criterion) and write a pruned-model artifact.

    Example:
      foadx prune mobilefacenet --data demo --flops-target 0.636 --round-to 16 --recalibrate-bn --out out/mfn-foad

    One budget: --flops-target, --params-target, --ratio, --ratios or --latency-target (2.0ms, 1.5x); none is the paper's mode (--t, --s). --round-to 16 keeps widths that CPU kernels run fast.
    """
    from foadx.atomic import check_folder_target
    from foadx.errors import CheckFailedError
    from foadx.latency.rounds import LatencyTargetMissed
    from foadx.pruning.artifact import is_own_output
    from foadx.tasks.prune import (Calibration, ChannelBudget, PruneRequest, PruneScope, prune_model, read_table,
                                   refuse_mixed_budgets)

    if latency_target is not None:
        refuse_mixed_budgets({"--t": t, "--s": s, "--ratio": ratio, "--ratios": ratios,
                              "--flops-target": flops_target, "--params-target": params_target})
        budget = latency_options.budget(latency_target, round_to)
    else:
        latency_options.refuse_without_target()
        budget = ChannelBudget(t, s, ratio, render.read_ratios(ratios) if ratios else None, flops_target,
                               params_target, **({} if round_to is None else {"round_to": round_to}))
    request = PruneRequest(budget, criterion, PruneScope(include_coupled, tuple(exclude or ()), recalibrate_bn),
                           Calibration(data, images, batch_size, seed, device))
    request.check()
    check_folder_target(out, is_own_output, force, "foadx prune")
    prepare_report(report)
    table, shown = read_table(budget), not quiet and not as_json
    with render.staged_progress(enabled=shown) as advance:
        try:
            result = prune_model(model_options.resolve(model, seed).module(), request, table=table, progress=advance)
        except LatencyTargetMissed as missed:  # the best plan found is kept, marked missed, and reported
            missed.result.save(out, force=force)
            missed.result.report["out"] = str(out)
            render.show(missed.result.report, as_json=as_json, quiet=True, table=render.prune_report, report=report)
            raise CheckFailedError(f"{missed}; the best plan is kept in {out} (latency verdict: missed)") from None
    result.save(out, force=force)
    if shown:  # --json carries it as the report's 'weights'
        render.notes(render.random_weights_note(result.report["weights"]))
    result.report["out"] = str(out)
    result.report["weights_bytes"]["file"] = (out / "weights.pt").stat().st_size
    render.show(result.report, as_json=as_json, quiet=quiet, table=render.prune_report, report=report)


@app.command("profile")
@handles_errors
@takes_threads_option
@takes_model_options
def profile_command(
    model: ModelArgument,
    out: Annotated[Path, typer.Option(help="The latency table (JSON) to write.")],
    backend: Annotated[str, typer.Option(help=PROFILING_BACKEND_HELP)] = "ort-cpu",
    batch: Annotated[int, typer.Option(help="The batch the latency is for.")] = 1,
    round_to: Annotated[Optional[int], typer.Option(help="Legal width step (default 16 on CPUs, 8 on CUDA).")] = None,
    mode: Annotated[Optional[str], typer.Option(help="auto (the default): unit at batch 1, network above; unit: each conv unit timed alone; network: each group's widths timed inside the whole network, beside the unpruned one (NetAdapt). docs/latency.md, sections 2 and 9.")] = None,
    include_coupled: Annotated[bool, typer.Option(help="Also profile residual-coupled groups.")] = False,
    exclude: Annotated[Optional[list[str]], typer.Option(help="Group name to leave whole (repeatable).")] = None,
    seed: SeedOption = 0,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
    model_options: ModelOptions = ModelOptions(),
) -> None:
    """Measure MODEL's latency table on a backend, for prune --latency-target --lut.

    Example:
      foadx profile mobilefacenet --backend ort-cpu --out out/mfn.lut.json
    """
    from foadx.latency import DEFAULT_MODE, format_ms, profile, profiling_mode
    from foadx.runtime import check_profiling_backend

    check_profiling_backend(backend)
    mode = profiling_mode(DEFAULT_MODE if mode is None else mode, batch)
    prepare_report(out)
    network = model_options.resolve(model, seed).module()
    with render.progress(f"profiling ({mode} mode)", enabled=not quiet and not as_json) as advance:
        table = profile(network, backend, batch=batch, round_to=round_to, include_coupled=include_coupled,
                        exclude=exclude or (), mode=mode, progress=advance)
    table.save(out)
    summary = {"out": str(out), "mode": table.mode, "entries": len(table.entries),
               "network_points": sum(len(points) for points in table.network_savings.values()), "network_ms": table.network_ms, "digest": table.digest(),
               "bytes": out.stat().st_size, **table.identity()}
    render.show(summary, as_json=as_json, quiet=quiet, table=lambda _: typer.echo(
        (f"{len(table.entries)} unit latencies" if table.mode == "unit" else
         f"{summary['network_points']} in-network widths") + f" on {backend} (batch {batch}); the whole network "
        f"{format_ms(table.network_ms)} ms -> {out} ({summary['bytes']:,} bytes)"))
