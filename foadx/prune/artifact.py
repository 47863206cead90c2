"""The pruned-model artifact: a directory with ``plan.json`` and ``weights.pt``.

``load_pruned`` rebuilds the original architecture from the plan's model spec, cuts it to the
plan's kept indices with the same group discovery, and loads the weights with
``weights_only=True`` — no code is unpickled, and a model saved on a GPU loads on a CPU.
Both files are written atomically, weights first, so a directory with a ``plan.json`` always
has the weights that belong to it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from foadx.atomic import write_json, write_with
from foadx.device import resolve_device
from foadx.errors import ArtifactError, WeightsError
from foadx._version import __version__
from foadx.models.registry import ModelSource, build_model, model_source, read_state_dict
from foadx.prune.api import PLAN_SCHEMA_VERSION, PruneResult
from foadx.prune.apply import apply_kept
from foadx.prune.groups import build_dependency_graph, discover_groups

PLAN_FILE = "plan.json"
WEIGHTS_FILE = "weights.pt"


def is_artifact(path: str | Path) -> bool:
    return (Path(path) / PLAN_FILE).is_file()


def plan_digest(plan: dict[str, Any]) -> str:
    """sha256 of the plan's canonical JSON: names the exact structure a file was built from."""
    return hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()


def save_pruned(result: PruneResult, directory: str | Path) -> Path:
    return _write_artifact(result.plan, result.model, directory)


def save_trained(model: nn.Module, directory: str | Path, training: dict[str, Any]) -> Path:
    """A fine-tuned model in the same artifact format: its pruning plan (an empty one for an
    unpruned model) with a ``finetune`` record, and its weights."""
    plan = getattr(model, "_foadx_plan", None)
    if plan is None:
        source = model_source(model)
        plan = {
            "schema_version": PLAN_SCHEMA_VERSION, "foadx_version": __version__,
            "model": source.to_json() if source else None, "criterion": None, "output_layers": [], "groups": [],
        }
    return _write_artifact({**plan, "finetune": training}, model, directory)


def _write_artifact(plan: dict[str, Any], model: nn.Module, directory: str | Path) -> Path:
    if plan.get("model") is None:
        raise ArtifactError(
            "the model was not built by foadx.models.build_model, so its architecture cannot be "
            "rebuilt from a plan; build it with build_model(spec)"
        )
    directory = Path(directory)
    if not directory.parent.is_dir():
        raise ArtifactError(f"folder does not exist: {directory.parent}")
    try:  # an artifact that cannot be loaded back is worse than none
        build_pruned_architecture(plan, torch.device("cpu"))
    except ArtifactError as error:
        raise ArtifactError(
            f"{error}: the plan must apply to the freshly built {plan['model']['spec']} "
            "(a model pruned twice cannot be saved as an artifact; prune the original once)"
        ) from error
    directory.mkdir(exist_ok=True)
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    write_with(directory / WEIGHTS_FILE, lambda stream: torch.save(state, stream))
    write_json(directory / PLAN_FILE, plan)
    return directory


def read_plan(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / PLAN_FILE
    if not path.is_file():
        raise ArtifactError(f"no {PLAN_FILE} in {directory}: not a pruned-model artifact")
    try:
        plan = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ArtifactError(f"corrupt {path}: {error}") from error
    if not isinstance(plan, dict) or plan.get("schema_version") != PLAN_SCHEMA_VERSION:
        raise ArtifactError(
            f"{path} has schema version {plan.get('schema_version') if isinstance(plan, dict) else None!r}; "
            f"this foadx reads version {PLAN_SCHEMA_VERSION}"
        )
    if not plan.get("model") or not isinstance(plan.get("groups"), list):
        raise ArtifactError(f"{path} lacks the model spec or the groups list")
    return plan


def build_pruned_architecture(plan: dict[str, Any], device: torch.device) -> nn.Module:
    """The original architecture, cut to the plan's widths (weights still random)."""
    try:
        source = ModelSource.from_json(plan["model"])
        kept = {group["name"]: [int(i) for i in group["kept"]] for group in plan["groups"]}
    except (KeyError, TypeError, ValueError) as error:
        raise ArtifactError(f"malformed plan: {error}") from error
    model = build_model(source.spec, source.input_size, **source.kwargs).to(device).eval()
    example = torch.zeros(2, 3, *source.input_size, device=device)
    dependency_graph = build_dependency_graph(model, example)
    groups = discover_groups(model, dependency_graph, list(plan.get("output_layers", [])))
    by_name = {group.name: group for group in groups}
    for name, indices in kept.items():
        group = by_name.get(name)
        if group is None or group.channels != _planned_channels(plan, name):
            raise ArtifactError(f"plan group {name!r} does not match the architecture of {source.spec}")
        if not indices or min(indices) < 0 or max(indices) >= group.channels:
            raise ArtifactError(f"plan group {name!r} keeps indices outside 0..{group.channels - 1}")
    apply_kept(model, dependency_graph, groups, kept)
    return model


def _planned_channels(plan: dict[str, Any], name: str) -> int:
    return next(int(g["channels"]) for g in plan["groups"] if g["name"] == name)


def load_pruned(path: str | Path, device: str | torch.device | None = None) -> nn.Module:
    """Rebuilds a pruned model from its artifact directory, on ``device`` (default: auto)."""
    target = resolve_device(device)
    plan = read_plan(path)
    model = build_pruned_architecture(plan, target)
    try:
        state = read_state_dict(Path(path) / WEIGHTS_FILE, map_location=target)
        model.load_state_dict(state)
    except WeightsError as error:
        raise ArtifactError(str(error)) from error
    except RuntimeError as error:
        raise ArtifactError(f"{Path(path) / WEIGHTS_FILE} does not fit its plan: {str(error).splitlines()[0]}") from error
    model.eval()
    setattr(model, "_foadx_plan", plan)
    return model


