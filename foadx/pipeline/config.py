"""The pipeline file: one TOML file (stdlib ``tomllib``) that says what ``foadx run`` does.

Every section is [model], [data] or a stage's settings, and every key is checked against the
stage's schema before any stage runs: an unknown key, a wrong type, a value out of its range
(``foadx.pipeline.limits``), a missing required key or a stage whose input no other stage
produces is a ``BadInputError`` (exit 3) naming the field and its line in the file. The file is
data: a [model] spec that names code (``pkg.module:function``, ``file.py:function``) is refused
unless the caller trusts it (``trust_code``), as an artifact's plan is.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from foadx.errors import BadInputError
from foadx.pipeline import limits
from foadx.pipeline.stage import UNPRUNED, Check, Field, Stage

MAX_PIPELINE_BYTES = 1024 * 1024
BUDGETS = ("ratio", "flops_target", "params_target", "latency_target")

# the sections every pipeline has: key -> (accepted types, default; ... = required)
MODEL_SETTINGS: dict[str, Field] = {
    "spec": ((str,), ...), "input_size": ((int,), None), "args": ((dict,), {}), "weights": ((str,), None),
    "pretrained": ((str,), None), "seed": ((int,), 0)}
DATA_SETTINGS: dict[str, Field] = {
    "source": ((str,), ...), "task": ((str,), None), "val_split": ((float,), None), "images": ((int,), 128)}
REQUIRED_SECTIONS = {"model": MODEL_SETTINGS, "data": DATA_SETTINGS}
SECTION_CHECKS: dict[str, dict[str, Check]] = {
    "model": {"input_size": limits.count(8192), "seed": limits.between(0, 2**63 - 1)},
    "data": {"task": limits.one_of(limits.tasks), "val_split": limits.fraction(), "images": limits.count()}}
MODEL_FILES = ("weights",)  # [model] settings naming files whose contents every stage's hash covers


@dataclass(frozen=True)
class Pipeline:
    """A checked pipeline file: its path, every section present with defaults filled in, the
    line number of each section and key (for messages), and the stage names in running order."""

    path: Path
    sections: dict[str, dict[str, Any]]  # every section present, with its defaults filled in
    lines: dict[str, int] = field(default_factory=dict)  # "section" / "section.key" -> line number
    order: tuple[str, ...] = ()  # every stage name known, in running order
    trust_code: bool = False  # the user trusts the code a [model] spec names (and the run's artifacts name)

    @property
    def stages(self) -> list[str]:
        """The stages the file has a section for, in running order."""
        return [stage for stage in self.order if stage in self.sections]

    def settings(self, section: str) -> dict[str, Any]:
        """A section's settings with defaults filled in; {} for a section the file lacks."""
        return self.sections.get(section, {})

    def where(self, name: str) -> str:
        """``path:line`` of a section or ``section.key`` (the section's line for an absent key; the path alone if neither)."""
        line = self.lines.get(name) or self.lines.get(name.split(".")[0])
        return f"{self.path}:{line}" if line else str(self.path)


def _line_numbers(text: str) -> dict[str, int]:
    """Where each ``[section]`` and ``key =`` stands (top-level tables and their keys)."""
    lines, section = {}, ""
    for number, line in enumerate(text.splitlines(), start=1):
        header = re.match(r"\s*\[([A-Za-z_][\w-]*)\]\s*(#.*)?$", line)
        key = re.match(r"\s*([A-Za-z_][\w-]*)\s*=", line)
        if header:
            section = header.group(1)
            lines.setdefault(section, number)
        elif key:
            lines.setdefault(f"{section}.{key.group(1)}" if section else key.group(1), number)
    return lines


def _type_ok(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in types:
        return False  # TOML true is not a number
    return isinstance(value, types) or (float in types and isinstance(value, int) and not isinstance(value, bool))


def _check_ranges(name: str, values: dict[str, Any], checks: dict[str, Check], where: Any) -> None:
    for key, check in checks.items():
        wanted = check(values.get(key))
        if wanted is not None:
            message = f"{where(f'{name}.{key}')}: {name}.{key} must be {wanted}, got {values.get(key)!r}"
            raise BadInputError(message[:400])


def _section(name: str, schema: dict[str, Field], given: Any, where: Any) -> dict[str, Any]:
    if not isinstance(given, dict):
        raise BadInputError(f"{where(name)}: [{name}] must be a table")
    for key, value in given.items():
        if key not in schema:
            raise BadInputError(f"{where(f'{name}.{key}')}: unknown key {name}.{key} (known: {', '.join(schema)})")
        types = schema[key][0]
        if not _type_ok(value, types):
            wanted = " or ".join(t.__name__ for t in types)
            raise BadInputError(f"{where(f'{name}.{key}')}: {name}.{key} must be {wanted}, got {type(value).__name__} {value!r}")
    missing = [key for key, (_, default) in schema.items() if default is ... and key not in given]
    if missing:
        raise BadInputError(f"{where(name)}: [{name}] needs {', '.join(missing)}")
    return {key: (float(given[key]) if float in types and isinstance(given.get(key), int) else given.get(key, default))
            for key, (types, default) in schema.items()}


def _check_stages(pipeline: Pipeline, stages: Sequence[Stage]) -> None:
    for stage in stages:
        needed = stage.needs
        if needed is not None and stage.name in pipeline.sections and needed not in pipeline.sections:
            raise BadInputError(f"{pipeline.where(stage.name)}: [{stage.name}] reads what [{needed}] writes, "
                                f"and the file has no [{needed}]")
    prune = pipeline.settings("prune")
    if prune:
        budgets = [name for name in BUDGETS if prune[name] is not None]
        if len(budgets) != 1:
            raise BadInputError(f"{pipeline.where('prune')}: [prune] needs exactly one budget of {', '.join(BUDGETS)}, "
                                f"got {', '.join(budgets) or 'none'}")


def _refuse_code(pipeline: Pipeline, stages: Sequence[Stage]) -> None:
    """Refuses [model] spec, and any stage setting naming a MODEL (``Stage.models``) that is a spec,
    when it names code and the file is not trusted (the pipeline's own ``unpruned`` names none)."""
    from foadx.models.registry import runs_user_code
    from foadx.resolve import names_spec

    named = {"model.spec": pipeline.settings("model")["spec"]}
    named.update({f"{stage.name}.{key}": pipeline.settings(stage.name)[key] for stage in stages
                  if stage.name in pipeline.sections for key in stage.models})
    for name, spec in named.items():
        if pipeline.trust_code or spec in (None, UNPRUNED) or not names_spec(spec) or not runs_user_code(spec):
            continue
        raise BadInputError(f"{pipeline.where(name)}: {name} {spec!r} names code: building it would "
                            "import and run that code; pass trust_code if you trust this file",
                            parameters=("trust_code",))


def load_pipeline(path: str | Path, stages: Sequence[Stage], *, trust_code: bool = False) -> Pipeline:
    """Reads and checks a pipeline file against [model], [data] and ``stages``' settings (types
    and ranges); no stage runs before the file is known to be whole.

    Args:
        path: the TOML file (at most ``MAX_PIPELINE_BYTES``, a regular file).
        stages: the stage registry, in running order.
        trust_code: accept a [model] spec that names code (``pkg.module:function``, ``file.py:function``).

    Raises:
        BadInputError: a missing, oversized, non-regular or malformed file, an unknown section
            or key, a value of the wrong type or out of its range, a missing required key, a
            stage without its input, or a spec naming code without ``trust_code`` (each
            message names the field and its line).
    """
    from foadx.untrusted import read_toml

    path = Path(path)
    data, text = read_toml(path, "pipeline file", MAX_PIPELINE_BYTES)
    lines = _line_numbers(text)
    where = Pipeline(path, {}, lines).where
    schemas = {**REQUIRED_SECTIONS, **{stage.name: stage.settings for stage in stages}}
    unknown = [name for name in data if name not in schemas]
    if unknown:
        raise BadInputError(f"{where(unknown[0])}: unknown section [{unknown[0]}] (known: {', '.join(schemas)})")
    for name in REQUIRED_SECTIONS:
        if name not in data:
            raise BadInputError(f"{path}: a pipeline needs a [{name}] section")
    sections = {name: _section(name, schemas[name], given, where) for name, given in data.items()}
    checks = {**SECTION_CHECKS, **{stage.name: stage.checks for stage in stages}}
    for name, values in sections.items():
        _check_ranges(name, values, checks.get(name, {}), where)
    pipeline = Pipeline(path, sections, lines, tuple(stage.name for stage in stages), trust_code)
    _check_stages(pipeline, stages)
    _refuse_code(pipeline, stages)
    return pipeline
