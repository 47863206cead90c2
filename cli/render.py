"""Terminal rendering for the CLI: rich tables, the progress bar, small option readers."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from foadx.errors import BadInputError

stdout = Console()
stderr = Console(stderr=True)


def read_ratios(path: Path) -> dict[str, float]:
    try:
        ratios = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise BadInputError(f"cannot read --ratios {path}: {error}") from error
    if not isinstance(ratios, dict):
        raise BadInputError(f"--ratios {path} must be a JSON object: group name -> ratio")
    return ratios


@contextmanager
def progress(label: str, enabled: bool) -> Iterator[Callable[[int, int | None], None] | None]:
    """A progress bar on stderr; yields the hook the library calls (done, total)."""
    if not enabled:
        yield None
        return
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=stderr, transient=True) as bar:
        task = bar.add_task(label, total=None)

        def advance(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield advance


def _millions(value: int) -> str:
    return f"{value / 1e6:,.3f}M"


def models_table(rows: list[dict[str, Any]]) -> None:
    table = Table(title="foadx model zoo")
    for column in ("name", "input", "description"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["name"], "x".join(map(str, row["input_size"])), row["description"])
    table.caption = "also: torchvision:NAME, pkg.module:function, path/file.py:function"
    stdout.print(table)


def inspect_table(info: dict[str, Any]) -> None:
    table = Table(title=f"{info['model']}: {_millions(info['params'])} params, {_millions(info['macs'])} MACs")
    for column in ("group", "channels", "kind", "pruned by default"):
        table.add_column(column, justify="right" if column == "channels" else "left")
    for group in info["groups"]:
        kind = "unsupported: " + group["note"] if group["note"] else ("coupled" if group["coupled"] else "decoupled")
        table.add_row(group["name"], str(group["channels"]), kind, "yes" if group["default"] else "no")
    table.caption = f"never pruned (output): {', '.join(info['output_layers'])}"
    stdout.print(table)


def prune_report(report: dict[str, Any]) -> None:
    table = Table(title=f"pruned with {report['criterion']}")
    for column in ("group", "before", "after", "kept"):
        table.add_column(column, justify="left" if column == "group" else "right")
    for group in report["groups"]:
        if not group["pruned"]:
            continue
        table.add_row(group["name"], str(group["before"]), str(group["after"]),
                      f"{group['after'] / group['before']:.0%}")
    stdout.print(table)
    totals = Table(show_header=True)
    for column in ("", "before", "after", "reduction"):
        totals.add_column(column, justify="right")
    for key, label in (("params", "params"), ("macs", "MACs"), ("weights_bytes", "weights bytes")):
        entry = report[key]
        totals.add_row(label, f"{entry['before']:,}", f"{entry['after']:,}", f"{entry['reduction']:.1%}")
    stdout.print(totals)
    details = []
    if report["t"] is not None:
        details.append(f"t = {report['t']}, s = {report['s']:.6g}")
    details.append(f"round_to = {report['round_to']}")
    if report["calibration_images"]:
        details.append(f"{report['calibration_images']} calibration images")
    if report["bn_recalibration_images"]:
        details.append(f"BN re-estimated on {report['bn_recalibration_images']} images")
    details.append(f"weights.pt {report['weights_bytes']['file']:,} bytes -> {report['out']}")
    stdout.print("; ".join(details))
