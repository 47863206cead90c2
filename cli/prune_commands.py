"""Commands about models and pruning: models, inspect, prune."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from foadx.errors import BadInputError
from foadx_cli import render
from foadx_cli.app import app, handles_errors
from foadx_cli.options import (
    InputSizeOption,
    JsonOption,
    ModelArgOption,
    ModelArgument,
    ModelOrArtifactArgument,
    WeightsMapOption,
    WeightsOption,
    load_model,
    load_module,
)


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

    network = load_model(model, weights, weights_map, input_size)
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
    network = load_module(model, weights, weights_map, input_size, model_arg)
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
