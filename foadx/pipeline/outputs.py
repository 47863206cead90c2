"""Which folders ``foadx run`` and ``foadx sweep`` may write into: an empty or missing one, or
their own earlier output (which they resume); anything else is refused before any work unless
``force``, which replaces the folder as a whole.

"Own" is exact. A run folder holds only stage folders (each with its ``stage.json``),
``summary.json`` (a ``foadx.pipeline`` report) and ``summary.md``, and the hidden lock, staging
and temporary files foadx's atomic writes leave beside them. A sweep folder holds only
``points/`` (point folders, each with its ``point.json``, and their hidden lock and staging
files), ``sweep.json`` (a ``foadx.sweep`` report), ``sweep.md``, ``figures/`` and
``report.html`` (the last three only beside ``sweep.json``), and hidden temporary files.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

from foadx.atomic import check_folder_target
from foadx.errors import BadInputError

MAX_REPORT_BYTES = 64 * 1024 * 1024
SWEEP_FILES = ("points", "sweep.json", "sweep.md", "figures", "report.html")
_POINT_HIDDEN = re.compile(r"\.[^/]+\.(?:lock|partial(?:\.previous)?)")  # a point folder's lock and staging


def _hidden(names: Iterable[str]) -> re.Pattern[str]:
    """The lock (``.NAME.lock``), staging (``.NAME.*.partial[.previous]``) and temporary
    (``.NAME.*.tmp``) files foadx.atomic leaves beside NAME."""
    alternatives = "|".join(re.escape(name) for name in names)
    return re.compile(rf"\.(?:{alternatives})\.(?:lock|[^/]*\.partial(?:\.previous)?|[^/]*\.tmp)")


def _is_report(path: Path, kind: str) -> bool:
    from foadx.untrusted import read_json

    try:
        report = read_json(path, "report", MAX_REPORT_BYTES)
    except BadInputError:
        return False
    return isinstance(report, dict) and report.get("kind") == kind


def is_run_folder(folder: Path, stages: Iterable[str]) -> bool:
    """Whether ``folder`` holds only what ``foadx run`` writes (see the module's docstring)."""
    stages = set(stages)
    hidden = _hidden([*stages, "summary.json", "summary.md"])
    for entry in folder.iterdir():
        if entry.name in stages:
            if entry.is_symlink() or not entry.is_dir() or not os.path.lexists(entry / "stage.json"):
                return False  # a stage folder holds its record (which is then checked as data)
        elif entry.name not in ("summary.json", "summary.md") and not hidden.fullmatch(entry.name):
            return False
    summary = folder / "summary.json"
    return _is_report(summary, "foadx.pipeline") if summary.exists() else not (folder / "summary.md").exists()


def _is_points_folder(points: Path) -> bool:
    if points.is_symlink() or not points.is_dir():
        return False
    for entry in points.iterdir():
        name = entry.name
        if name.startswith("."):
            if not _POINT_HIDDEN.fullmatch(name):
                return False
        elif entry.is_symlink() or not (entry / "point.json").is_file():
            return False
    return True


def is_sweep_folder(folder: Path) -> bool:
    """Whether ``folder`` holds only what ``foadx sweep`` writes (see the module's docstring)."""
    hidden = _hidden(SWEEP_FILES)
    names = {entry.name for entry in folder.iterdir()}
    if any(name not in SWEEP_FILES and not hidden.fullmatch(name) for name in names):
        return False
    if "points" in names and not _is_points_folder(folder / "points"):
        return False
    if names & {"sweep.md", "figures", "report.html"} or "sweep.json" in names:
        return _is_report(folder / "sweep.json", "foadx.sweep")
    return True


def claim_folder(out: str | Path, owned: Callable[[Path], bool], force: bool, what: str, *,
                 replace: bool = True) -> Path:
    """``out``, checked before any work: missing, empty or ``what``'s own earlier output (kept,
    to resume); with ``force``, any folder, emptied (unless ``replace`` is off: a dry run) so
    that the new output replaces it whole.

    Raises:
        BadInputError: ``out`` is a file, a link or a special file, or a non-empty folder that is
            not ``what``'s own output and ``force`` is off.
    """
    out = check_folder_target(out, owned, force, what)
    if force and replace and out.is_dir():
        shutil.rmtree(out)
    return out
