"""Report schemas (JSON Schema, versioned) and reading reports back with a clear error."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from foadx.errors import BadInputError

SCHEMA_VERSION = 1
LATENCY_KIND = "foadx.latency"
PARITY_KIND = "foadx.parity"
REPORT_KINDS = (LATENCY_KIND, PARITY_KIND, "foadx.prune", "foadx.eval", "foadx.sweep", "foadx.pipeline")
REQUIRED_FIELDS = {"foadx.prune": ("criterion", "plan_digest", "groups", "params", "macs"),
                   "foadx.eval": ("model", "data", "task", "backend"),
                   "foadx.sweep": ("model", "backend", "points", "unpruned"), "foadx.pipeline": ("stages",),
                   PARITY_KIND: ("path", "passed", "cases", "worst")}
_SCHEMA_FILES = {LATENCY_KIND: "latency.schema.json"}


@lru_cache(maxsize=None)
def schema_for(kind: str) -> dict[str, Any]:
    text = resources.files("foadx.report").joinpath(_SCHEMA_FILES[kind]).read_text()
    return json.loads(text)


def validate_report(report: dict[str, Any]) -> None:
    """Raises BadInputError naming the first field that breaks the report's schema."""
    kind = report.get("kind") if isinstance(report, dict) else None
    if kind not in _SCHEMA_FILES:
        raise BadInputError(f"not a foadx latency report (kind {kind!r})")
    try:
        jsonschema.validate(report, schema_for(kind))
    except jsonschema.ValidationError as error:
        where = "/".join(str(part) for part in error.absolute_path) or "(top level)"
        raise BadInputError(f"report does not follow the {kind} schema at {where}: {error.message}") from None


def read_report(path: str | Path) -> dict[str, Any]:
    """Loads a foadx JSON report of any kind; latency reports are validated against their schema,
    the others checked for the fields their rendering reads."""
    path = Path(path)
    try:
        report = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BadInputError(f"cannot read report {path}: {error}") from error
    if not isinstance(report, dict) or report.get("kind") not in REPORT_KINDS:
        raise BadInputError(f"{path} is not a foadx report")
    missing = [name for name in REQUIRED_FIELDS.get(report["kind"], ()) if name not in report]
    if missing:
        raise BadInputError(f"{path}: a {report['kind']} report needs {', '.join(missing)}")
    if report["kind"] == LATENCY_KIND:
        try:
            validate_report(report)
        except BadInputError as error:
            raise BadInputError(f"{path}: {error}") from None
    return report
