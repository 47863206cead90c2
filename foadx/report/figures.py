"""The figures each report kind carries the data for, drawn by ``foadx.report.plots`` into a
folder. Each function takes a report (a dict of its kind) and a folder and returns
{caption: PNG path}; ``foadx.report.kinds`` says which kind has which.

Raises (all): MissingDependencyError when matplotlib is absent (``foadx[plots]``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from foadx.report import plots


def latency_figures(report: dict[str, Any], folder: Path) -> dict[str, Path]:
    """A latency report's spread per model and backend, and its speedups."""
    return {"latency spread and speedups": plots.latency(report, folder)}


def prune_figures(report: dict[str, Any], folder: Path) -> dict[str, Path]:
    """A prune report's channels kept per group."""
    return {"channels kept per group": plots.widths(report["groups"], folder, title=report["criterion"])}


def sweep_figures(report: dict[str, Any], folder: Path) -> dict[str, Path]:
    """A sweep's accuracy against measured latency and MACs, the unpruned model among the points."""
    unpruned = {"label": "unpruned", "criterion": "unpruned", **report["unpruned"]}
    points = [{"label": f"{p['criterion']} {p['budget']:g}", **p} for p in report["points"]]
    return {"accuracy against measured latency and MACs": plots.tradeoff([unpruned, *points], folder)}
