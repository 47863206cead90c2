"""The report registry: every kind of JSON report foadx writes, with its schema version, the
fields reading and rendering rely on, its JSON Schema file (where it has one), its Markdown
renderer and its figures; and ``envelope``, the one place that stamps a report's kind, schema
version and foadx version. Adding a kind is one entry here.

Schema versions are those the reports carried before the registry (parity 2, since scale-aware
parity: per-sample cosines, error relative to the output's RMS, task agreement; the others 1);
prune and eval reports written before the registry carry no version and read as version 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from foadx._version import __version__
from foadx.errors import BadInputError, FoadxError
from foadx.report import kind_schemas
from foadx.report.speedup import check_latency_speedups, check_sweep_speedups
from foadx.report.figures import eval_figures, latency_figures, prune_figures, sweep_figures
from foadx.report.markdown import (
    eval_markdown,
    latency_markdown,
    parity_markdown,
    pipeline_markdown,
    prune_markdown,
    sweep_markdown,
)

ENVELOPE_FIELDS = ("kind", "schema_version", "foadx_version")


@dataclass(frozen=True)
class ReportKind:
    """One kind of report.

    Attributes:
        name: the ``kind`` field, e.g. ``"foadx.latency"``.
        schema_version: the version this foadx writes and the newest it reads.
        required: top-level fields a report of this kind must hold to be read and rendered.
        schema_file: a JSON Schema in the ``foadx.report`` package the report is validated
            against, or None.
        schema: the JSON Schema itself (``foadx.report.kind_schemas``) where there is no file.
        markdown: ``report -> Markdown text``, or None where the kind has no rendering.
        figures: ``(report, folder) -> {caption: PNG path}``, or None where it has no figures.
        check: ``report -> None``, raising BadInputError, for what a JSON Schema cannot say (an
            interval's order), run after the schema; or None.
    """

    name: str
    schema_version: int
    required: tuple[str, ...] = ()
    schema_file: str | None = None
    schema: dict[str, Any] | None = None
    markdown: Callable[[dict[str, Any]], str] | None = None
    figures: Callable[[dict[str, Any], Path], dict[str, Path]] | None = None
    check: Callable[[dict[str, Any]], None] | None = None


REPORT_KINDS: dict[str, ReportKind] = {
    kind.name: kind
    for kind in (
        ReportKind("foadx.latency", 1, schema_file="latency.schema.json", markdown=latency_markdown,
                   figures=latency_figures, check=check_latency_speedups),
        ReportKind("foadx.parity", 2, ("path", "passed", "cases", "worst"), schema=kind_schemas.PARITY,
                   markdown=parity_markdown),
        ReportKind("foadx.prune", 1, ("criterion", "plan_digest", "groups", "params", "macs"),
                   schema=kind_schemas.PRUNE, markdown=prune_markdown, figures=prune_figures),
        ReportKind("foadx.eval", 1, ("model", "data", "task", "backend"), schema=kind_schemas.EVAL,
                   markdown=eval_markdown, figures=eval_figures),
        ReportKind("foadx.sweep", 1, ("model", "backend", "points", "unpruned"), schema=kind_schemas.SWEEP,
                   markdown=sweep_markdown, figures=sweep_figures, check=check_sweep_speedups),
        ReportKind("foadx.pipeline", 1, ("stages",), schema=kind_schemas.PIPELINE, markdown=pipeline_markdown),
        ReportKind("foadx.engine", 1, ("engine", "input", "input_chw"), schema=kind_schemas.ENGINE),  # a TensorRT engine's sidecar
    )
}
"""The report registry: ``kind`` name -> ``ReportKind`` (latency, parity, prune, eval, sweep, pipeline, engine sidecar); one entry adds a kind."""


def get_kind(name: Any) -> ReportKind:
    """The registry entry of report kind ``name``.

    Raises:
        BadInputError: ``name`` is not a kind foadx writes.
    """
    if name not in REPORT_KINDS:
        raise BadInputError(f"not a foadx report (kind {name!r})")
    return REPORT_KINDS[name]


def envelope(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """A report of ``kind``: ``kind``, its registered ``schema_version`` and this
    ``foadx_version``, then the fields of ``body`` (a JSON-ready dict).

    Raises:
        BadInputError: ``kind`` is not registered.
        FoadxError: ``body`` already holds one of the envelope's fields (a defect of the caller).
    """
    entry = get_kind(kind)
    clash = [name for name in ENVELOPE_FIELDS if name in body]
    if clash:
        raise FoadxError(f"a {kind} report body must not set {', '.join(clash)}: the envelope does")
    return {"kind": entry.name, "schema_version": entry.schema_version, "foadx_version": __version__, **body}
