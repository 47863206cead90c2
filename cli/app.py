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
from foadx_cli import render

ModelArgument = Annotated[str, typer.Argument(help="Zoo name, torchvision:NAME, pkg.module:fn or file.py:fn.")]
WeightsOption = Annotated[Optional[Path], typer.Option(help="State dict to load (weights_only).")]
WeightsMapOption = Annotated[Optional[Path], typer.Option(help="JSON regex -> replacement for keys.")]
InputSizeOption = Annotated[Optional[str], typer.Option(help="H or HxW (default: the model's).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]

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


def _load_model(spec: str, weights: Optional[Path], weights_map: Optional[Path], input_size: Optional[str]):
    from foadx.models import build_model, load_weights
    from foadx.models.registry import read_weights_map

    model = build_model(spec, parse_input_size(input_size))
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
    model: ModelArgument,
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
    network = _load_model(model, weights, weights_map, input_size)
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


def main() -> None:
    app(prog_name="foadx")


if __name__ == "__main__":
    sys.exit(main())
