"""``foadx run``: runs a pipeline's stages in order, skipping those that are up to date.

Each stage's folder ``OUT/STAGE/`` holds ``stage.json``: the stage's hash, its record and the
digests of the files it wrote (``foadx.pipeline.records``). The hash covers the stage's own
settings, [model] and [data], the contents of the input files they name (``inputs``), foadx's
version and the hashes of the stages it reads, so a change re-runs that stage and everything
downstream of it, and nothing else (as make or DVC would). A record that does not check out
(edited, or a file it lists missing or changed) counts as absent: the stage runs again and its
reason says why. A stage is written into a staging
folder and swapped in whole when it succeeds: a killed or failed stage leaves its previous
folder (or none) and every earlier stage intact. A stage whose output failed its own check
(``StageMissed``: a latency target missed) is swapped in too, its ``stage.json`` naming the miss,
so the best it made can be inspected; it is never up to date and stops the run (exit code 4).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from foadx._version import __version__
from foadx.atomic import atomic_directory, write_json, write_text
from foadx.errors import BadInputError, FoadxError, first_line
from foadx.pipeline.config import Pipeline
from foadx.pipeline.inputs import input_digests
from foadx.pipeline.outputs import claim_folder, is_run_folder
from foadx.pipeline.records import RecordProblem, check_entry, list_files
from foadx.pipeline.stage import Record, StageContext, StageMissed
from foadx.pipeline.stages import STAGE_BY_NAME

STAGE_FILE = "stage.json"
MAX_STAGE_FILE_BYTES = 16 * 1024 * 1024
SUMMARY_JSON, SUMMARY_MD = "summary.json", "summary.md"


@dataclass
class StageOutcome:
    """What one stage did in a run: its name, status ("ran", "skipped", "failed", "planned"),
    why, and its record (what its work returned, with ``seconds`` of wall time when it ran)."""

    stage: str
    status: str  # ran, skipped, failed, planned
    reason: str
    record: Record = field(default_factory=dict)


def stage_hash(pipeline: Pipeline, stage: str, upstream: dict[str, str], inputs: dict[str, Any]) -> str:
    """SHA-256 (hex) of what ``stage``'s output depends on: its settings, [model], [data],
    ``inputs`` (``foadx.pipeline.inputs.input_digests``: the contents of the files they name),
    foadx's version and the hashes of the stages it reads (``upstream``)."""
    content = {"stage": stage, "settings": pipeline.settings(stage), "model": pipeline.settings("model"),
               "data": pipeline.settings("data"), "inputs": inputs["model"], "data_identity": inputs["data"],
               "files": inputs.get(stage, {}), "foadx": __version__,
               "reads": {name: upstream[name] for name in STAGE_BY_NAME[stage].reads if name in upstream}}
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def read_stage(out: Path, stage: str) -> tuple[dict[str, Any] | None, str]:
    """A finished stage's ``stage.json`` and "" when it checks out (``records.check_entry``);
    else None and why not ("" when there is none): the stage then runs again."""
    from foadx.untrusted import read_json

    path = out / stage / STAGE_FILE
    if not path.exists() and not path.is_symlink():
        return None, ""
    if path.is_symlink():  # a record is the stage's own file, never one from elsewhere
        return None, f"record did not check out: {STAGE_FILE} is a link"
    try:
        entry = read_json(path, STAGE_FILE, MAX_STAGE_FILE_BYTES)
        check_entry(entry, STAGE_BY_NAME[stage], out)
    except (BadInputError, RecordProblem, OSError) as error:
        return None, f"record did not check out: {first_line(error)}"
    return entry, ""


def _selected(stages: list[str], start: str | None, only: str | None) -> tuple[list[str], set[str]]:
    """The stages to consider and those forced to run (``--from``: it and all after it)."""
    for name, value in (("--from", start), ("--only", only)):
        if value is not None and value not in stages:
            raise BadInputError(f"{name} {value}: the pipeline's stages are {', '.join(stages)}")
    if only is not None:
        return [only], {only}
    forced = set(stages[stages.index(start):]) if start is not None else set()
    return stages, forced


def run_pipeline(pipeline: Pipeline, out: str | Path, *, start: str | None = None, only: str | None = None,
                 dry_run: bool = False, force: bool = False,
                 progress: Callable[[StageOutcome], None] | None = None) -> list[StageOutcome]:
    """Runs (or, with ``dry_run``, plans) the pipeline's stages into ``out``; returns what each
    did. A stage's error stops the run and propagates (its exit code), after the summary is
    written.

    Args:
        out: the run folder: missing, empty or an earlier run's (``foadx.pipeline.outputs``).
        start: a stage to run again with every stage after it (the CLI's ``--from``).
        only: the one stage to run; the stages it reads must have up-to-date outputs.
        force: replace a folder that is not an earlier run's output as a whole (and start afresh).
        progress: called with each stage's outcome as it finishes.

    Raises:
        BadInputError: ``out`` is not empty and not an earlier run's output (without ``force``),
            an input file the pipeline names is missing or not a regular file, ``start`` or
            ``only`` names no stage of the pipeline, or ``only`` reads a stage without up-to-date
            output (CLI exit code 3). Any FoadxError a stage raises propagates unchanged
            (CheckFailedError 4, RegressionError 5, MissingDependencyError 6 ...).
    """
    stages, forced = _selected(pipeline.stages, start, only)
    inputs = input_digests(pipeline, STAGE_BY_NAME)  # before any work: a missing input is refused here
    out = claim_folder(out, partial(is_run_folder, stages=STAGE_BY_NAME), force, "foadx run", replace=not dry_run)
    hashes: dict[str, str] = {}
    records: dict[str, Record] = {}
    outcomes: list[StageOutcome] = []
    for stage in pipeline.stages:
        hashes[stage] = stage_hash(pipeline, stage, hashes, inputs)
        previous, problem = read_stage(out, stage)
        current = previous is not None and previous.get("hash") == hashes[stage] and "missed" not in previous
        if stage not in stages:
            if current:
                records[stage] = previous["record"]
            continue
        missing = [name for name in STAGE_BY_NAME[stage].reads if name in pipeline.sections and name not in records]
        if only is not None and missing:
            raise BadInputError(f"--only {stage} reads {', '.join(missing)}, which has no up-to-date output in {out}: run it first")
        reason = _reason(previous, problem, stage in forced)
        if current and stage not in forced:
            outcome = StageOutcome(stage, "skipped", "up to date", previous["record"])
        elif dry_run:
            outcome = StageOutcome(stage, "planned", reason)
        else:
            outcome = _run_stage(pipeline, stage, hashes[stage], records, out, reason, outcomes)
        records[stage] = outcome.record
        outcomes.append(outcome)
        if progress:
            progress(outcome)
    if not dry_run:
        write_summary(out, outcomes)
    return outcomes


def _reason(previous: dict[str, Any] | None, problem: str, forced: bool) -> str:
    if forced:
        return "asked for (--from/--only)"
    if problem:
        return problem
    if previous is not None and "missed" in previous:
        return "its last run missed its check"
    return "no earlier output" if previous is None else "settings or inputs changed"


def _run_stage(pipeline: Pipeline, stage: str, digest: str, records: dict[str, Record], out: Path, reason: str,
               outcomes: list[StageOutcome]) -> StageOutcome:
    inputs = {name: records[name] for name in STAGE_BY_NAME[stage].reads if name in records}
    start = time.perf_counter()
    try:
        with atomic_directory(out / stage) as staging:
            record, missed = _work(stage, StageContext(pipeline, inputs, out, staging))
            record["seconds"] = round(time.perf_counter() - start, 2)
            write_json(staging / STAGE_FILE, {"stage": stage, "hash": digest, "reason": reason, "record": record,
                                              "files": list_files(staging, stage),
                                              **({"missed": str(missed)} if missed else {})})
        if missed:
            raise missed
    except FoadxError as error:
        failed = StageOutcome(stage, "failed", str(error).splitlines()[0])
        write_summary(out, [*outcomes, failed])
        raise
    return StageOutcome(stage, "ran", reason, record)


def _work(stage: str, context: StageContext) -> tuple[Record, StageMissed | None]:
    """The stage's record, and the miss when its output failed its own check (kept all the same)."""
    try:
        return STAGE_BY_NAME[stage].work(context), None
    except StageMissed as missed:
        return missed.record, missed


def _key_figure(outcome: StageOutcome) -> str:
    if outcome.status == "failed":
        return outcome.reason
    return STAGE_BY_NAME[outcome.stage].key_figure(outcome.record) if outcome.record else ""


def _file(outcome: StageOutcome) -> str:
    record = outcome.record
    for key in ("html", "markdown", "report"):
        if isinstance(record.get(key), str):
            return record[key]
    return f"{outcome.stage}/" if outcome.status in ("ran", "skipped") else ""


def summary_report(outcomes: list[StageOutcome]) -> dict[str, Any]:
    """The run's ``foadx.pipeline`` report: each stage's status, reason, key figure, main file
    and record."""
    from foadx.report.kinds import envelope

    return envelope("foadx.pipeline", {"stages": [
        {"stage": o.stage, "status": o.status, "reason": o.reason, "key_figure": _key_figure(o), "file": _file(o),
         "record": o.record} for o in outcomes]})


def summary_markdown(outcomes: list[StageOutcome]) -> str:
    """One Markdown table (stage, status, key figure, file): a CI job summary, rendered by the
    report's own table renderer (the one ``foadx report summary.json`` prints under its title)."""
    from foadx.report.markdown import pipeline_table

    return pipeline_table(summary_report(outcomes))


def write_summary(out: Path, outcomes: list[StageOutcome]) -> None:
    from foadx.report.markdown import pipeline_table

    out.mkdir(parents=True, exist_ok=True)
    report = summary_report(outcomes)
    write_text(out / SUMMARY_MD, pipeline_table(report))
    write_json(out / SUMMARY_JSON, report)


__all__ = ["StageOutcome", "run_pipeline", "summary_markdown"]
