"""``foadx run`` (a pipeline file's stages, re-running only what changed) and ``foadx sweep``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from foadx_cli import render
from foadx_cli.app import app, handles_errors
from foadx_cli.options import (
    takes_threads_option,
    DataOption,
    ForceOption,
    ImagesOption,
    ModelArgument,
    ModelOptions,
    PROFILING_BACKEND_HELP,
    QuietOption,
    SeedOption,
    takes_model_options,
)


@app.command("run")
@handles_errors
@takes_threads_option
def run_command(
    pipeline_file: Annotated[Path, typer.Argument(help="The pipeline (TOML): model, data and one section per stage.")],
    out: Annotated[Optional[Path], typer.Option(help="Folder for every stage's output (default: beside the file, NAME-out/).")] = None,
    start: Annotated[Optional[str], typer.Option("--from", help="Re-run this stage and every one after it.")] = None,
    only: Annotated[Optional[str], typer.Option(help="Run only this stage (earlier ones must be up to date).")] = None,
    dry_run: Annotated[bool, typer.Option(help="Print which stages would run and why; run nothing.")] = False,
    trust_code: Annotated[bool, typer.Option(help="Build a [model] spec that names code (module:function, file.py:function): runs its code.")] = False,
    force: ForceOption = False,
    quiet: QuietOption = False,
) -> None:
    """Run a pipeline file: train, prune, finetune, export, verify, bench, report (each optional).

    Example:
      foadx run examples/digits.toml --out out/pipeline

    Stages whose settings and inputs are unchanged are skipped; OUT/summary.md is a CI job summary.
    """
    from foadx.pipeline import load_pipeline, run_pipeline, summary_markdown

    pipeline = load_pipeline(pipeline_file, trust_code=trust_code)
    folder = out if out is not None else pipeline_file.with_name(pipeline_file.stem + "-out")

    def say(outcome) -> None:
        if not quiet:
            typer.echo(f"{outcome.stage}: {outcome.status} ({outcome.reason})", err=True)

    with render.status(f"running {pipeline_file}", enabled=not quiet and not dry_run):
        outcomes = run_pipeline(pipeline, folder, start=start, only=only, dry_run=dry_run, force=force,
                                progress=None if dry_run else say)
    if not quiet:
        typer.echo(summary_markdown(outcomes))


@app.command("sweep")
@handles_errors
@takes_threads_option
@takes_model_options
def sweep_command(
    model: ModelArgument,
    data: DataOption,
    out: Annotated[Path, typer.Option(help="Folder for the points, sweep.json, sweep.md, figures and report.html (resumable).")],
    flops_target: Annotated[Optional[str], typer.Option(help="Comma-separated MACs fractions to remove, e.g. 0.3,0.5,0.636,0.75.")] = None,
    params_target: Annotated[Optional[str], typer.Option(help="Comma-separated params fractions to remove.")] = None,
    ratio: Annotated[Optional[str], typer.Option(help="Comma-separated per-group channel ratios.")] = None,
    criterion: Annotated[str, typer.Option(help="Comma-separated criteria (foad, l1, random, hrank, ...).")] = "foad,l1,random",
    finetune_epochs: Annotated[int, typer.Option(help="Fine-tune every point for this many epochs (0: none).")] = 0,
    finetune_lr: Annotated[float, typer.Option(help="Learning rate of that fine-tune.")] = 0.02,
    flip: Annotated[bool, typer.Option(help="Random horizontal flips while fine-tuning.")] = True,
    backend: Annotated[str, typer.Option(help=f"Where latency is measured: {PROFILING_BACKEND_HELP}")] = "ort-cpu",
    batch: Annotated[int, typer.Option(help="The batch latency is measured at.")] = 1,
    images: ImagesOption = 128,
    round_to: Annotated[int, typer.Option(help="Round kept widths up to a multiple.")] = 1,
    accuracy: Annotated[Optional[str], typer.Option(help="Face: the accuracy axis as tar@FAR (e.g. tar@1e-3): same-model TAR at that FAR over every pair of the data's identities. Default: the data's own metric.")] = None,
    seed: SeedOption = 0,
    force: ForceOption = False,
    quiet: QuietOption = False,
    model_options: ModelOptions = ModelOptions(),
) -> None:
    """Prune MODEL at every budget with every criterion, (fine-tune,) evaluate and time each; plot the trade-off.

    Example:
      foadx sweep out/base --data demo --flops-target 0.3,0.5,0.75 --finetune-epochs 1 --out out/sweep
    """
    from foadx.errors import BadInputError
    from foadx.runtime import check_profiling_backend
    from foadx.pipeline.sweep import SweepSettings, run_sweep
    from foadx.report import render_markdown

    given = {name: value for name, value in (("flops_target", flops_target), ("params_target", params_target),
                                             ("ratio", ratio)) if value is not None}
    if len(given) != 1:
        raise BadInputError("give one of --flops-target, --params-target or --ratio (comma-separated values)")
    (kind, text), = given.items()
    try:
        budgets = tuple(float(value) for value in text.split(",") if value.strip())
    except ValueError:
        raise BadInputError(f"--{kind.replace('_', '-')} must be comma-separated numbers, got {text!r}") from None
    settings = SweepSettings(kind, budgets, tuple(c.strip() for c in criterion.split(",") if c.strip()), data,
                             finetune_epochs, finetune_lr, backend, batch, images, round_to, flip, seed, accuracy)
    settings.check()
    check_profiling_backend(backend)  # exit 6 before any work
    ref = model_options.resolve(model, seed)
    with render.status("sweeping", enabled=not quiet):
        report = run_sweep(ref, settings, out, progress=None if quiet else (lambda line: typer.echo(line, err=True)),
                           force=force)
    if not quiet:
        typer.echo(render_markdown(report), nl=False)
