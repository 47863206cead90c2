"""The pruned-model artifact: a folder with ``plan.json`` and ``weights.pt``.

``load_pruned`` rebuilds the original architecture from the plan's model spec, cuts it to the
plan's kept indices with the same group discovery, and loads the weights with
``weights_only=True`` — no code is unpickled, and a model saved on a GPU loads on a CPU.
The folder is written whole beside its target and swapped in (``foadx.atomic``), so a plan and
its weights always belong together.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from foadx.atomic import atomic_directory, check_folder_target, write_json, write_with
from foadx.device import resolve_device
from foadx.errors import ArtifactError, WeightsError
from foadx.models.input_contract import check_forward
from foadx.models.registry import build_model, model_task, read_state_dict, runs_user_code, state_dict_mismatch
from foadx.pruning.analysis import trace_groups
from foadx.pruning.apply import apply_kept
from foadx.provenance import Plan, Provenance, provenance_of, record_provenance, require_provenance
from foadx.untrusted import MAX_DEPTH, check_depth, read_text

PLAN_FILE = "plan.json"
WEIGHTS_FILE = "weights.pt"
ARTIFACT_FILES = frozenset({PLAN_FILE, WEIGHTS_FILE})
MAX_PLAN_BYTES = 16 << 20  # a plan lists indices of a few thousand channels: kilobytes


def is_artifact(path: str | Path) -> bool:
    """True when ``path`` is a folder holding ``plan.json`` (nothing is read or validated: one that
    is not a regular file is refused by ``read_plan``, naming what it is)."""
    return os.path.lexists(Path(path) / PLAN_FILE)


def is_own_output(directory: Path, allowed: frozenset[str] = ARTIFACT_FILES) -> bool:
    """An earlier artifact written by the same kind of command: a plan and only known files."""
    names = {entry.name for entry in directory.iterdir()}
    return PLAN_FILE in names and names <= allowed


def save_artifact(model: nn.Module, directory: str | Path, *, force: bool = False,
                  extra: frozenset[str] = frozenset()) -> Path:
    """Writes ``model`` (its provenance plan and its weights) as an artifact folder, replacing an
    earlier artifact as a whole; another non-empty folder only with ``force``.

    Args:
        model: a module foadx built, pruned, loaded or fine-tuned (it carries provenance).
        directory: the artifact folder; missing parents are created.
        force: replace a non-empty folder that is not an earlier artifact.
        extra: further file names an earlier output of the same command may hold.

    Returns:
        The folder written.

    Raises:
        BadInputError: the model carries no provenance, or ``directory`` is a foreign non-empty
            folder without ``force`` (CLI exit code 3).
        ArtifactError: an in-memory module without a rebuildable spec, a plan that does not
            apply to the freshly built architecture, or weights that do not fit it tensor by
            tensor (the folder is not written; exit code 3).
    """
    plan = require_provenance(model, "saving an artifact").plan
    refuse_unrebuildable(plan)
    target = check_folder_target(directory, lambda d: is_own_output(d, ARTIFACT_FILES | extra), force, "foadx artifact")
    try:  # an artifact that cannot be loaded back is worse than none (its code ran here already)
        rebuilt = build_pruned_architecture(plan, torch.device("cpu"), trust_code=True)
    except ArtifactError as error:
        raise ArtifactError(f"{error}: the plan must apply to the freshly built {plan.model.spec}") from error
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    _refuse_other_architecture(state, rebuilt.state_dict(), plan.model.spec)
    with atomic_directory(target) as staging:
        write_artifact_files(staging, plan, state)
    return target


def _refuse_other_architecture(state: dict[str, torch.Tensor], rebuilt: dict[str, torch.Tensor], spec: str) -> None:
    """The weights must fit what ``load_pruned`` will build from the plan's spec, tensor by tensor."""
    if state.keys() != rebuilt.keys():
        differing = sorted(state.keys() ^ rebuilt.keys())
        raise ArtifactError(f"the model is not what {spec} builds ({len(differing)} tensors differ, first "
                            f"{differing[0]!r}): give the spec that built it")
    for key, tensor in state.items():
        if tensor.shape != rebuilt[key].shape:
            raise ArtifactError(f"the model is not what {spec} builds: {key} is {tuple(tensor.shape)} here, "
                                f"{tuple(rebuilt[key].shape)} there; give the spec that built it")


def write_artifact_files(folder: Path, plan: Plan, state: dict[str, torch.Tensor]) -> None:
    """Writes ``weights.pt`` (``state``, a state dict) and ``plan.json`` into ``folder``, each file
    atomically; no checks (``save_artifact`` checks and swaps the folder in whole)."""
    write_with(folder / WEIGHTS_FILE, lambda stream: torch.save(state, stream))
    write_json(folder / PLAN_FILE, plan.to_json())


def record_training(model: nn.Module, training: dict[str, Any]) -> None:
    """Notes a fine-tune in the model's provenance (the artifact's ``finetune`` record)."""
    provenance = require_provenance(model, "fine-tuning")
    record_provenance(model, provenance.with_plan(provenance.plan.with_finetune(training)))


def read_plan(directory: str | Path) -> Plan:
    """Reads and validates an artifact's ``plan.json`` (at most 16 MiB) without building anything.

    Raises:
        ArtifactError: no ``plan.json``, an oversized or unparsable file, or a plan that fails
            ``Plan.from_json`` (CLI exit code 3).
    """
    path = Path(directory) / PLAN_FILE
    if not os.path.lexists(path):
        raise ArtifactError(f"no {PLAN_FILE} in {directory}: not a pruned-model artifact")
    try:
        data = json.loads(read_text(path, "plan", MAX_PLAN_BYTES))
        check_depth(data, "it")
    except RecursionError:
        raise ArtifactError(f"corrupt {path}: nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as error:  # BadInputError is a ValueError: unreadable, too large, too deep
        raise ArtifactError(f"corrupt {path}: {str(error).splitlines()[0]}") from None
    try:
        return Plan.from_json(data)
    except ArtifactError as error:
        raise ArtifactError(f"{path}: {error}") from error


def refuse_untrusted_code(plan: Plan, where: str, trust_code: bool) -> None:
    """Opening a file never runs code it names, unless the user says so (``--trust-code``)."""
    if runs_user_code(plan.model.spec) and not trust_code:
        raise ArtifactError(
            f"{where} names the model factory {plan.model.spec!r} with arguments {plan.model.kwargs}: building it "
            "would import and run that code; pass --trust-code (trust_code=True) if you trust this file"
        )


def refuse_unrebuildable(plan: Plan) -> None:
    """An artifact is rebuilt from its spec when loaded (no code is unpickled); a module handed
    in memory has none.

    Raises:
        ArtifactError: the plan's model has no rebuildable spec (one line saying how to give one).
    """
    if not plan.model.rebuildable:
        raise ArtifactError(
            f"{plan.model.spec} is an in-memory module with no spec to rebuild it from when the artifact loads: "
            "build it with foadx.build_model(spec), or prune it with source=ModelSource(spec='pkg.module:factory', "
            "input_size=(H, W), ...) naming a factory that builds this architecture"
        )


def build_pruned_architecture(plan: Plan, device: torch.device, *, trust_code: bool = False) -> nn.Module:
    """The original architecture, cut to the plan's widths (weights still random).

    Raises:
        ArtifactError: no rebuildable spec, untrusted code, or output layers or groups that do not
            match the architecture;
        BadInputError: the architecture does not run on the plan's (1, C, H, W) input (``check_forward``).
    """
    source = plan.model
    refuse_unrebuildable(plan)
    refuse_untrusted_code(plan, "the plan", trust_code)
    kwargs = dict(source.kwargs)
    if source.spec.startswith("torchvision:"):  # the artifact's weights.pt replaces pretrained ones: never fetch them
        kwargs.pop("weights", None)
    model = build_model(source.spec, source.input_size, **kwargs).to(device).eval()
    if not plan.is_pruned:
        return model
    check_forward(model, source.input_chw)  # a plan whose input the architecture does not take: one line, not a trace error
    modules = dict(model.named_modules())
    strangers = [name for name in plan.output_layers if name not in modules]
    if strangers:
        raise ArtifactError(f"plan output layer {strangers[0][:120]!r} is not a module of {source.spec}")
    example = torch.zeros(2, *source.input_chw, device=device)
    _, dependency_graph, groups = trace_groups(model, example, list(plan.output_layers))
    by_name = {group.name: group for group in groups}
    for planned in plan.groups:
        group = by_name.get(planned.name)
        if group is None or group.channels != planned.channels:
            raise ArtifactError(f"plan group {planned.name!r} does not match the architecture of {source.spec}")
    apply_kept(model, dependency_graph, groups, plan.kept)
    return model


def onnx_source_beside(plan: Plan, folder: Path) -> Plan:
    """``plan``, or, when it was pruned from an ONNX file that is no longer where it recorded it
    (or is another file there now), the plan pointed at the file of the same name and sha256 in
    the artifact ``folder`` or beside it: an artifact moved (or copied to another machine)
    together with its source still loads.

    Raises:
        ArtifactError: the ONNX source is in none of those places (CLI exit code 3).
    """
    spec, digest = plan.model.spec, plan.model.kwargs.get("sha256")
    if not spec.endswith(".onnx") or _holds(Path(spec), digest):
        return plan
    name = Path(spec).name
    for candidate in (folder / name, folder.parent / name):
        if _holds(candidate, digest):
            return dataclasses.replace(plan, model=dataclasses.replace(plan.model, spec=str(candidate.resolve())))
    if Path(spec).exists():
        return plan  # its import names the changed file
    raise ArtifactError(f"{folder} was pruned from {spec}, which is gone: put that file (sha256 "
                        f"{str(plan.model.kwargs.get('sha256', '?'))[:12]}...) in {folder} or beside it")


def _holds(path: Path, digest: str | None) -> bool:
    """Whether ``path`` is a regular file with sha256 ``digest`` (any regular file when None)."""
    from foadx.models.onnx_graph import file_sha256

    return path.is_file() and (digest is None or file_sha256(path) == digest)


def load_pruned(path: str | Path, device: str | torch.device | None = None, *, trust_code: bool = False) -> nn.Module:
    """Rebuilds a pruned (or fine-tuned) model from its artifact folder, on ``device`` (default:
    auto). A plan whose model is a ``module:function`` or ``file.py:function`` factory is built
    only with ``trust_code=True``: loading an artifact is as safe as a weights_only checkpoint.

    Returns:
        The module in eval mode, carrying the plan's provenance; it takes (N, C, H, W) with the
        plan's ``input_chw``.

    Raises:
        ArtifactError: an unreadable or invalid plan, an untrusted code factory, plan groups that
            do not match the architecture, or weights that are unreadable or do not fit (CLI exit
            code 3).
        BadInputError: an unknown device; MissingDependencyError: ``cuda`` without a GPU (exit code 6).
    """
    target = resolve_device(device)
    plan = onnx_source_beside(read_plan(path), Path(path))
    refuse_untrusted_code(plan, f"{Path(path) / PLAN_FILE}", trust_code)
    model = build_pruned_architecture(plan, target, trust_code=trust_code)
    try:
        state = read_state_dict(Path(path) / WEIGHTS_FILE, map_location=target)
    except WeightsError as error:
        raise ArtifactError(str(error)) from error
    problems = state_dict_mismatch(model, state)
    if problems:
        raise ArtifactError(f"{Path(path) / WEIGHTS_FILE} does not fit its plan: {problems}")
    model.load_state_dict(state)
    model.eval()
    built = provenance_of(model)  # the task the build found (an ONNX import reads it off its graph)
    record_provenance(model, Provenance(plan, plan.trained_task or (built.task if built else model_task(plan.model.spec))))
    return model
