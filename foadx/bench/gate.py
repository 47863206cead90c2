"""The latency regression gate: this run against a baseline report, for pipelines.

Each configuration (model, backend, batch, precision) present in both reports is compared on
its median over rounds; a model slower than the baseline by more than ``max_regression_pct``
fails the gate (exit 5). Reports from different machines are not comparable: a differing
environment fingerprint is a warning, or a refusal under ``strict_env``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from foadx.errors import BadInputError, RegressionError
from foadx.runtime.environment import environment_differences


@dataclass
class GateResult:
    max_regression_pct: float
    rows: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(row["passed"] for row in self.rows)

    def to_json(self) -> dict[str, Any]:
        return {"max_regression_pct": self.max_regression_pct, "passed": self.passed,
                "rows": self.rows, "warnings": self.warnings}

    def raise_if_failed(self) -> None:
        failed = [row for row in self.rows if not row["passed"]]
        if failed:
            worst = max(failed, key=lambda row: row["change_pct"])
            raise RegressionError(
                f"{len(failed)} configuration(s) slower than the baseline by more than {self.max_regression_pct:g}%; "
                f"worst: {worst['model']} on {worst['backend']} batch {worst['batch']}: "
                f"{worst['baseline_ms']:.4g} ms -> {worst['current_ms']:.4g} ms ({worst['change_pct']:+.1f}%)"
            )


def _key(result: dict[str, Any]) -> tuple:
    return (result["model"], result["backend"], result["batch"], result["precision"])


def compare_to_baseline(
    report: dict[str, Any], baseline: dict[str, Any], max_regression_pct: float, strict_env: bool = False
) -> GateResult:
    if max_regression_pct < 0:
        raise BadInputError(f"--max-regression must be >= 0 percent, got {max_regression_pct}")
    warnings = []
    differences = environment_differences(report["environment"], baseline["environment"])
    if differences:
        message = "the baseline was measured in another environment (" + "; ".join(differences) + ")"
        if strict_env:
            raise BadInputError(message + ": refusing to compare (--strict-env)")
        warnings.append(message)
    previous = {_key(result): result for result in baseline["results"]}
    rows = []
    for result in report["results"]:
        old = previous.get(_key(result))
        if old is None:
            warnings.append(f"no baseline for {result['model']} on {result['backend']} batch {result['batch']}")
            continue
        change = (result["median_of_rounds_ms"] / old["median_of_rounds_ms"] - 1.0) * 100.0
        rows.append({
            "model": result["model"], "backend": result["backend"], "batch": result["batch"],
            "baseline_ms": old["median_of_rounds_ms"], "current_ms": result["median_of_rounds_ms"],
            "change_pct": change, "passed": change <= max_regression_pct,
        })
    if not rows:
        raise BadInputError("the baseline has none of this run's configurations (model, backend, batch, precision)")
    return GateResult(max_regression_pct, rows, warnings)
