"""The latency regression gate: this run against a baseline report, for pipelines.

Each configuration (model, backend, batch, precision) present in both reports is compared on
its median over rounds; a model slower than the baseline by more than ``max_regression_pct``
fails the gate (exit 5). Reports from different machines are not comparable: a differing
environment fingerprint is a warning, or a refusal under ``strict_env``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from foadx.errors import BadInputError, RegressionError
from foadx.report.schema import MAX_REPORT_BYTES, validate_report
from foadx.runtime.environment import environment_differences
from foadx.runtime.registry import BACKENDS
from foadx.untrusted import read_json

BASELINE_KIND = "foadx.latency"


def read_baseline(path: str | Path) -> dict[str, Any]:
    """The latency report at ``path`` to gate against, checked before any measuring: a regular
    file of at most ``MAX_REPORT_BYTES`` (a FIFO is refused unopened), a ``foadx.latency``
    report (another kind is named), valid against its schema, each row's precision one its
    backend runs (``foadx.runtime.registry.BACKENDS``), each configuration listed once with a
    finite positive median.

    Raises:
        BadInputError: naming the path and what is wrong (exit 3).
    """
    report = read_json(path, "baseline", MAX_REPORT_BYTES)
    kind = report.get("kind") if isinstance(report, dict) else None
    if kind != BASELINE_KIND:
        got = f"a {kind} report" if isinstance(kind, str) and len(kind) <= 64 else "not a foadx report"
        raise BadInputError(f"baseline {path} is {got}; the regression gate needs a {BASELINE_KIND} report "
                            "(foadx bench --report)")
    try:
        validate_report(report)
        check_precisions(report)
        _rows_by_key(report, "baseline")  # a duplicate row or a bad median: refused before measuring, not after
    except BadInputError as error:
        raise BadInputError(f"baseline {path}: {error}") from None
    return report


def check_precisions(report: dict[str, Any]) -> None:
    """Each row's precision is one its backend runs, by the backend registry (unknown backends,
    such as an external tool's, are left to their own check).

    Raises:
        BadInputError: naming the row's model, backend and precision.
    """
    for row in report["results"]:
        backend = BACKENDS.get(row["backend"])
        if backend is not None and row["precision"] not in backend.precisions:
            raise BadInputError(f"{row['model']} on {row['backend']} is at precision {row['precision']!r}; "
                                f"{row['backend']} runs {', '.join(backend.precisions)}")


@dataclass
class GateResult:
    """The regression gate's verdict: one row per compared configuration (``baseline_ms`` and
    ``current_ms`` medians over rounds, ``change_pct``, ``passed``; ``missing`` where one report
    lacks it), the allowed regression (percent) and warnings."""

    max_regression_pct: float
    rows: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Every row passed (a configuration missing from one report does not)."""
        return all(row["passed"] for row in self.rows)

    def to_json(self) -> dict[str, Any]:
        """The ``gate`` entry of a latency report: allowed regression (percent), verdict, rows, warnings."""
        return {"max_regression_pct": self.max_regression_pct, "passed": self.passed,
                "rows": self.rows, "warnings": self.warnings}

    def raise_if_failed(self) -> None:
        """Raises:
            RegressionError: a configuration is missing from one report, or is slower than the
                baseline by more than ``max_regression_pct`` (the message names the worst; CLI exit code 5).
        """
        failed = [row for row in self.rows if not row["passed"]]
        if failed:
            missing = [row for row in failed if "missing" in row]
            if missing:
                row = missing[0]
                raise RegressionError(
                    f"{len(missing)} configuration(s) missing from one of the reports (first: {row['model']} on "
                    f"{row['backend']} batch {row['batch']}, missing in {row['missing']}); --allow-missing accepts that"
                )
            worst = max(failed, key=lambda row: row["change_pct"])
            raise RegressionError(
                f"{len(failed)} configuration(s) slower than the baseline by more than {self.max_regression_pct:g}%; "
                f"worst: {worst['model']} on {worst['backend']} batch {worst['batch']}: "
                f"{worst['baseline_ms']:.4g} ms -> {worst['current_ms']:.4g} ms ({worst['change_pct']:+.1f}%)"
            )


def _key(result: dict[str, Any]) -> tuple:
    return (result["model"], result["backend"], result["batch"], result["precision"])


def _rows_by_key(report: dict[str, Any], which: str) -> dict[tuple, dict[str, Any]]:
    """One row per configuration, each with a finite positive median; anything else means the
    report was edited or broken, and a gate on it would be meaningless."""
    rows: dict[tuple, dict[str, Any]] = {}
    for result in report["results"]:
        key = _key(result)
        if key in rows:
            raise BadInputError(f"the {which} report lists {key[0]} on {key[1]} batch {key[2]} twice")
        median = result["median_of_rounds_ms"]
        if not (isinstance(median, (int, float)) and math.isfinite(median) and median > 0):
            raise BadInputError(f"the {which} report's median for {key[0]} on {key[1]} batch {key[2]} is {median!r}")
        rows[key] = result
    return rows


IDENTITY_FIELDS = ("plan_digest", "params", "input_shape")


def check_same_models(report: dict[str, Any], baseline: dict[str, Any]) -> None:
    """A label must name the same model in both reports: same plan digest, params and input
    shape where both record them; a different model under an old label is refused."""
    previous = {model["label"]: model for model in baseline["models"]}
    for model in report["models"]:
        old = previous.get(model["label"])
        if old is None:
            continue
        for field_name in IDENTITY_FIELDS:
            now, then = model.get(field_name), old.get(field_name)
            if now is not None and then is not None and now != then:
                raise BadInputError(
                    f"{model['label']} is not the model the baseline measured under that label: its {field_name} "
                    f"is {now} now and {then} in the baseline"
                )


def compare_to_baseline(
    report: dict[str, Any], baseline: dict[str, Any], max_regression_pct: float, strict_env: bool = False,
    allow_missing: bool = False,
) -> GateResult:
    """Every configuration of either report is compared on its median over rounds; one that only
    one report has fails the gate unless ``allow_missing`` (then it is a warning).

    Args:
        report, baseline: ``foadx.latency`` reports (dicts as read); medians in ms.
        max_regression_pct: the allowed slow-down in percent (10 = 10% slower passes).
        strict_env: refuse a baseline measured in another environment instead of warning.

    Returns:
        The verdict; a failed gate does not raise here (``GateResult.raise_if_failed`` does).

    Raises:
        BadInputError: ``max_regression_pct`` negative or not finite, a label naming another model
            than in the baseline, a duplicate configuration or a non-positive median, no
            configuration in common, or another environment under ``strict_env`` (CLI exit code 3).
    """
    if not (max_regression_pct >= 0 and math.isfinite(max_regression_pct)):
        raise BadInputError(f"--max-regression must be a finite number >= 0 percent, got {max_regression_pct}")
    warnings = _environment_warnings(report, baseline, strict_env)
    check_same_models(report, baseline)
    previous, current = _rows_by_key(baseline, "baseline"), _rows_by_key(report, "current")
    rows = []
    for key in sorted(set(previous) | set(current), key=str):
        old, new = previous.get(key), current.get(key)
        if old is None or new is None:
            where = "the baseline" if old is None else "this run"
            message = f"{key[0]} on {key[1]} batch {key[2]} ({key[3]}) is missing in {where}"
            if allow_missing:
                warnings.append(message)
                continue
            rows.append({"model": key[0], "backend": key[1], "batch": key[2], "baseline_ms": None if old is None else
                         old["median_of_rounds_ms"], "current_ms": None if new is None else new["median_of_rounds_ms"],
                         "change_pct": None, "passed": False, "missing": where})
            continue
        change = (new["median_of_rounds_ms"] / old["median_of_rounds_ms"] - 1.0) * 100.0
        rows.append({"model": key[0], "backend": key[1], "batch": key[2], "baseline_ms": old["median_of_rounds_ms"],
                     "current_ms": new["median_of_rounds_ms"], "change_pct": change,
                     "passed": change <= max_regression_pct})
    if not any("missing" not in row for row in rows):
        raise BadInputError("the baseline has none of this run's configurations (model, backend, batch, precision)")
    return GateResult(max_regression_pct, rows, warnings)


def _environment_warnings(report: dict[str, Any], baseline: dict[str, Any], strict_env: bool) -> list[str]:
    differences = environment_differences(report["environment"], baseline["environment"])
    if not differences:
        return []
    message = "the baseline was measured in another environment (" + "; ".join(differences) + ")"
    if strict_env:
        raise BadInputError(message + ": refusing to compare (--strict-env)")
    return [message]
