"""What a pipeline stage is: one typed object (name, settings schema, the stages it reads, its
work and its key figure), and the context its work runs in.

A *variant* is one model going through the pipeline: ``unpruned`` and one per pruning criterion.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from foadx.errors import CheckFailedError

Record = dict[str, Any]  # a stage's record: its outputs (paths relative to the run folder) and key figures
Field = tuple[tuple[type, ...], Any]  # accepted types, default (``...``: required)
Check = Callable[[Any], "str | None"]  # None: the value is in range; else what is wanted (foadx.pipeline.limits)
Shape = Any  # a record field's shape (foadx.pipeline.records)
UNPRUNED = "unpruned"


class StageMissed(CheckFailedError):
    """A stage made its output but it failed the stage's own check (a latency target missed):
    the runner keeps the output, marked so that it is never up to date, and stops the run (CLI
    exit code 4). ``record`` is the stage's record of what it made."""

    def __init__(self, message: str, record: Record) -> None:
        super().__init__(message)
        self.record = record


@dataclass(frozen=True)
class StageContext:
    """Where a stage runs: the pipeline, the records of the stages it reads, the run folder and
    its own (empty, staging) folder."""

    pipeline: Any  # foadx.pipeline.config.Pipeline
    inputs: dict[str, Record]
    run: Path
    folder: Path

    def settings(self, section: str) -> dict[str, Any]:
        return self.pipeline.settings(section)


@dataclass(frozen=True)
class Stage:
    """One stage of ``foadx run``.

    Attributes:
        name: its section in the pipeline file and its folder in the run folder.
        settings: key -> (accepted types, default) of its section.
        work: the stage's work; returns its record.
        reads: the stages whose records it reads (those present in the pipeline).
        needs: a stage that must be in the pipeline for this one to have input.
        key_figure: one line for the summary table, from its record.
        checks: key -> the range its value must lie in (checked when the file is loaded).
        record: key -> shape of each field of its record (checked whenever it is read back);
            a key whose shape is ``records.Optional`` may be absent.
        files: settings naming input files whose contents the stage's hash covers.
        models: settings naming a MODEL (a spec, a file, an artifact folder): the hash covers its
            contents, and one naming code is refused unless the pipeline is trusted.
        sources: settings naming a data source (as [data] source): the hash covers its identity.
    """

    name: str
    settings: dict[str, Field]
    work: Callable[[StageContext], Record]
    reads: tuple[str, ...] = ()
    needs: str | None = None
    key_figure: Callable[[Record], str] = lambda record: ""
    checks: dict[str, Check] = field(default_factory=dict)
    record: dict[str, Shape] = field(default_factory=dict)
    files: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
