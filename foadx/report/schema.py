"""Checking reports against the report registry (``foadx.report.kinds``: kind, schema version,
required fields, JSON Schema) and reading them back with a clear error."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from foadx.errors import BadInputError
from foadx.report.kinds import REPORT_KINDS, ReportKind, get_kind
from foadx.untrusted import non_finite_path, read_json

MAX_REPORT_BYTES = 32 * 1024 * 1024  # a latency report of 100 models is ~0.2 MB, a sweep of 1,000 points ~0.5 MB


@lru_cache(maxsize=None)
def schema_for(kind: str) -> dict[str, Any]:
    """The JSON Schema (a dict) of report kind ``kind``.

    Raises:
        BadInputError: ``kind`` is not registered or has no schema file.
    """
    entry = get_kind(kind)
    if entry.schema is not None:
        return entry.schema
    if entry.schema_file is None:
        raise BadInputError(f"{kind} reports have no JSON Schema")
    return json.loads(resources.files("foadx.report").joinpath(entry.schema_file).read_text())


def _check_version(report: dict[str, Any], entry: ReportKind) -> None:
    version = report.get("schema_version", entry.schema_version)  # absent: a prune or eval report of before
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= entry.schema_version:
        raise BadInputError(f"a {entry.name} report of schema version {version!r}: this foadx reads versions "
                            f"1 to {entry.schema_version}")


def validate_report(report: dict[str, Any]) -> ReportKind:
    """Checks ``report`` against its kind's registry entry: a known kind, a schema version this
    foadx reads, the fields its rendering reads, its JSON Schema where it has one, then the
    kind's own ``check`` (e.g. a speedup interval's order).

    Returns:
        The kind's registry entry.

    Raises:
        BadInputError: naming what is wrong (a NaN or infinite number, or for a schema the first
            field that breaks it).
    """
    entry = get_kind(report.get("kind") if isinstance(report, dict) else None)
    _check_version(report, entry)
    non_finite = non_finite_path(report)
    if non_finite is not None:
        raise BadInputError(f"a {entry.name} report holds a number that is not finite at {non_finite}")
    missing = [name for name in entry.required if name not in report]
    if missing:
        raise BadInputError(f"a {entry.name} report needs {', '.join(missing)}")
    if entry.schema_file is not None or entry.schema is not None:
        try:
            jsonschema.validate(report, schema_for(entry.name))
        except jsonschema.ValidationError as error:
            where = "/".join(str(part) for part in error.absolute_path) or "(top level)"
            raise BadInputError(f"report does not follow the {entry.name} schema at {where}: {error.message}") from None
    if entry.check is not None:
        entry.check(report)
    return entry


def read_report(path: str | Path) -> dict[str, Any]:
    """Loads a foadx JSON report of any registered kind, checked by ``validate_report``.

    Raises:
        BadInputError: not a regular file (a FIFO is refused unopened), over
            ``MAX_REPORT_BYTES``, nested deeper than ``foadx.untrusted.MAX_DEPTH``, not JSON,
            not a foadx report, or failing its kind's schema (the message names the path).
    """
    path = Path(path)
    try:
        report = read_json(path, "report", MAX_REPORT_BYTES)
    except BadInputError as error:
        raise BadInputError(f"cannot read report {path}: {str(error).removeprefix(f'report {path} ')}") from None
    if not isinstance(report, dict) or report.get("kind") not in REPORT_KINDS:
        raise BadInputError(f"{path} is not a foadx report")
    try:
        validate_report(report)
    except BadInputError as error:
        raise BadInputError(f"{path}: {error}") from None
    return report
