"""``foadx run``: a pipeline file's stages, re-running only what changed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from foadx_cli.app import app, handles_errors
from foadx_cli.options import QuietOption


@app.command("run")
@handles_errors
def run_command(
    pipeline_file: Annotated[Path, typer.Argument(help="The pipeline (TOML): model, data and one section per stage.")],
    out: Annotated[Optional[Path], typer.Option(help="Folder for every stage's output (default: beside the file, NAME-out/).")] = None,
    start: Annotated[Optional[str], typer.Option("--from", help="Re-run this stage and every one after it.")] = None,
    only: Annotated[Optional[str], typer.Option(help="Run only this stage (earlier ones must be up to date).")] = None,
    dry_run: Annotated[bool, typer.Option(help="Print which stages would run and why; run nothing.")] = False,
    quiet: QuietOption = False,
) -> None:
    """Run a pipeline file: train, prune, finetune, export, verify, bench, report (each optional).

    Stages whose settings and inputs are unchanged are skipped; OUT/summary.md is a CI job summary.
    """
    from foadx.pipeline import load_pipeline, run_pipeline, summary_markdown

    pipeline = load_pipeline(pipeline_file)
    folder = out if out is not None else pipeline_file.with_name(pipeline_file.stem + "-out")

    def say(outcome) -> None:
        if not quiet:
            typer.echo(f"{outcome.stage}: {outcome.status} ({outcome.reason})", err=True)

    outcomes = run_pipeline(pipeline, folder, start=start, only=only, dry_run=dry_run, progress=None if dry_run else say)
    if not quiet:
        typer.echo(summary_markdown(outcomes))
