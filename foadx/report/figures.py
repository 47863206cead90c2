"""The figures each report kind carries the data for, drawn by ``foadx.report.plots`` into a
folder. Each function takes a report (a dict of its kind) and a folder and returns
{caption: PNG path}; ``foadx.report.kinds`` says which kind has which.

The work is bounded whatever the report holds: at most ``MAX_ROWS_DRAWN`` rows (latency results,
groups) and ``MAX_POINTS_DRAWN`` sweep points are drawn per figure, the first ones, and the
caption says so; the tables in the Markdown still list every row.

Raises (all): MissingDependencyError when matplotlib is absent (``foadx[plots]``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from foadx.report import plots

MAX_ROWS_DRAWN = 64  # boxes and bars per figure; more would be unreadable at any canvas size
MAX_POINTS_DRAWN = 256  # sweep points per figure


def _first(rows: list[Any], limit: int, caption: str) -> tuple[list[Any], str]:
    """The first ``limit`` rows, and the caption saying how many were drawn when that is not all."""
    if len(rows) <= limit:
        return rows, caption
    return rows[:limit], f"{caption} (the first {limit} of {len(rows)} drawn)"


def latency_figures(report: dict[str, Any], folder: Path) -> dict[str, Path]:
    """A latency report's spread per model and backend, and its speedups."""
    rows, caption = _first(report["results"], MAX_ROWS_DRAWN, "latency spread and speedups")
    return {caption: plots.latency({**report, "results": rows}, folder)}


def prune_figures(report: dict[str, Any], folder: Path) -> dict[str, Path]:
    """A prune report's channels kept per group."""
    groups, caption = _first(report["groups"], MAX_ROWS_DRAWN, "channels kept per group")
    return {caption: plots.widths(groups, folder, title=report["criterion"])}


def sweep_figures(report: dict[str, Any], folder: Path) -> dict[str, Path]:
    """A sweep's accuracy (or TAR at a FAR: its ``accuracy_axis``) against measured latency and
    MACs, the unpruned model among the points."""
    unpruned = {"label": "unpruned", "criterion": "unpruned", **report["unpruned"]}
    far = re.fullmatch(r"tar@([0-9.eE+-]{1,16})", report.get("accuracy_axis", ""))
    axis = f"TAR at FAR {far.group(1)} (every pair)" if far else "accuracy"
    points, caption = _first(report["points"], MAX_POINTS_DRAWN, f"{axis} against measured latency and MACs")
    labelled = [{"label": f"{p['criterion']} {p['budget']:g}", **p} for p in points]
    return {caption: plots.tradeoff([unpruned, *labelled], folder, accuracy_label=axis if far else "held-out accuracy")}


def roc_figure(rows: list[dict[str, Any]], folder: Path, caption: str = "ROC: TAR against FAR") -> dict[str, Path]:
    """ROC curves (log FAR axis) of ``foadx.eval`` ROC rows, same-model and cross-model (dashed),
    each labelled by its set and models; {} when no row carries a curve."""
    rows = [row for row in rows if row.get("curve")]
    if not rows:
        return {}
    rows, caption = _first(rows, MAX_ROWS_DRAWN, f"{caption} (cross-model rows dashed)")
    labelled = [{**row, "label": (f"{row['set']}: gallery {Path(row['gallery']).name} x probe {Path(row['probe']).name}"
                                  if row.get("cross") else f"{row['set']}: {Path(row['probe']).name}")} for row in rows]
    return {caption: plots.roc(labelled, folder)}


def eval_figures(report: dict[str, Any], folder: Path) -> dict[str, Path]:
    """A face eval report's ROC curves (log FAR axis): each same-model and cross-model row."""
    return roc_figure(report.get("roc", []), folder)
