"""The pipeline file: one TOML file (stdlib ``tomllib``) that says what ``foadx run`` does.

Every section is a stage's settings and every key is checked against ``SCHEMA`` before any stage
runs: an unknown key, a wrong type, a missing required key or a stage whose input no other
stage produces is a ``BadInputError`` (exit 3) naming the field and its line in the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from foadx.errors import BadInputError

MAX_PIPELINE_BYTES = 1024 * 1024
STAGES = ("train", "prune", "finetune", "export", "verify", "bench", "report")
BUDGETS = ("ratio", "flops_target", "params_target", "latency_target")

# section -> key -> (accepted types, default; ... = required)
SCHEMA: dict[str, dict[str, tuple[tuple[type, ...], Any]]] = {
    "model": {"spec": ((str,), ...), "input_size": ((int,), None), "args": ((dict,), {}),
              "weights": ((str,), None), "pretrained": ((str,), None), "seed": ((int,), 0)},
    "data": {"source": ((str,), ...), "task": ((str,), None), "val_split": ((float,), None),
             "images": ((int,), 128)},
    "train": {"epochs": ((int,), 1), "lr": ((float,), 0.05), "batch_size": ((int,), 64), "flip": ((bool,), True),
              "steps_per_epoch": ((int,), None)},
    "prune": {"criteria": ((list,), ["foad"]), "ratio": ((float,), None), "flops_target": ((float,), None),
              "params_target": ((float,), None), "latency_target": ((str,), None), "backend": ((str,), "ort-cpu"),
              "allocation": ((str,), "knapsack"),
              "round_to": ((int,), None), "recalibrate_bn": ((bool,), True), "include_coupled": ((bool,), False)},
    "finetune": {"epochs": ((int,), 1), "lr": ((float,), 0.02), "batch_size": ((int,), 64), "flip": ((bool,), True),
                 "steps_per_epoch": ((int,), None)},
    "export": {"opset": ((int,), None), "batch": ((int, str), None), "target": ((str,), "ort-cpu")},
    "verify": {"images": ((int,), 16), "batches": ((list,), [1, 4]), "min_cosine": ((float,), None),
               "atol": ((float,), None), "rtol": ((float,), None)},
    "bench": {"backends": ((list,), ["ort-cpu"]), "batches": ((list,), [1]), "duration_s": ((float,), 2.0),
              "rounds": ((int,), 5), "baseline": ((str,), None), "max_regression": ((float,), 10.0)},
    "report": {"html": ((bool,), True)},
}
REQUIRED_SECTIONS = ("model", "data")
NEEDS = {"verify": "export", "bench": "export", "finetune": "prune"}  # a stage -> the stage whose output it reads


@dataclass(frozen=True)
class Pipeline:
    path: Path
    sections: dict[str, dict[str, Any]]  # every section present, with its defaults filled in
    lines: dict[str, int] = field(default_factory=dict)  # "section" / "section.key" -> line number

    @property
    def stages(self) -> list[str]:
        return [stage for stage in STAGES if stage in self.sections]

    def settings(self, section: str) -> dict[str, Any]:
        return self.sections.get(section, {})

    def where(self, name: str) -> str:
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


def _section(name: str, given: Any, where: Any) -> dict[str, Any]:
    if not isinstance(given, dict):
        raise BadInputError(f"{where(name)}: [{name}] must be a table")
    schema = SCHEMA[name]
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


def _check_stages(pipeline: Pipeline) -> None:
    for stage, needed in NEEDS.items():
        if stage in pipeline.sections and needed not in pipeline.sections:
            raise BadInputError(f"{pipeline.where(stage)}: [{stage}] reads what [{needed}] writes, and the file has no [{needed}]")
    prune = pipeline.settings("prune")
    if prune:
        budgets = [name for name in BUDGETS if prune[name] is not None]
        if len(budgets) != 1:
            raise BadInputError(f"{pipeline.where('prune')}: [prune] needs exactly one budget of {', '.join(BUDGETS)}, "
                                f"got {', '.join(budgets) or 'none'}")
        if not prune["criteria"] or not all(isinstance(c, str) for c in prune["criteria"]):
            raise BadInputError(f"{pipeline.where('prune.criteria')}: prune.criteria must be a non-empty list of names")
    for name in ("verify.batches", "bench.batches"):
        section, key = name.split(".")
        values = pipeline.settings(section).get(key)
        if values is not None and not (values and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values)):
            raise BadInputError(f"{pipeline.where(name)}: {name} must be a non-empty list of positive integers")
    backends = pipeline.settings("bench").get("backends")
    if backends is not None and not (backends and all(isinstance(b, str) for b in backends)):
        raise BadInputError(f"{pipeline.where('bench.backends')}: bench.backends must be a non-empty list of names")


def load_pipeline(path: str | Path) -> Pipeline:
    """Reads and checks a pipeline file; no stage runs before it is known to be whole."""
    import tomllib

    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"pipeline file not found: {path}")
    if path.stat().st_size > MAX_PIPELINE_BYTES:
        raise BadInputError(f"{path}: {path.stat().st_size} bytes; a pipeline file is at most {MAX_PIPELINE_BYTES}")
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise BadInputError(f"{path}: not a TOML file: {error}") from None
    lines = _line_numbers(text)
    where = Pipeline(path, {}, lines).where
    unknown = [name for name in data if name not in SCHEMA]
    if unknown:
        raise BadInputError(f"{where(unknown[0])}: unknown section [{unknown[0]}] (known: {', '.join(SCHEMA)})")
    for name in REQUIRED_SECTIONS:
        if name not in data:
            raise BadInputError(f"{path}: a pipeline needs a [{name}] section")
    pipeline = Pipeline(path, {name: _section(name, given, where) for name, given in data.items()}, lines)
    _check_stages(pipeline)
    return pipeline
