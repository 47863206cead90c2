"""``foadx.prune``: score channels on calibration images, choose kept indices, cut the network.

The phases: check the request, analyse the network (dependency graph, groups, costs), score the
channels with the chosen criterion, select kept indices within the budget, cut, and record the
plan on the pruned model (its provenance), so that saving, exporting and benchmarking it later
know exactly what it is.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from foadx.device import resolve_device
from foadx.errors import BadInputError, BudgetError, DataError
from foadx.pruning.apply import apply_kept
from foadx.pruning.artifact import save_artifact
from foadx.pruning.batchnorm import recalibrate_batchnorm
from foadx.pruning.cost import CostModel, ModelCost, count_cost
from foadx.pruning.criteria import CRITERIA, ScoringInputs
from foadx.pruning.features import ProgressHook
from foadx.pruning.groups import ChannelGroup, build_dependency_graph, discover_groups, find_output_layers
from foadx.pruning.offsets import OffsetSpace
from foadx.pruning.select import Budget, Selection, select_by_scores, select_foad
from foadx.provenance import Plan, PlanGroup, Provenance, provenance_of, record_provenance, require_provenance


@dataclass
class PruneResult:
    model: nn.Module
    plan: Plan
    report: dict[str, Any]
    groups: list[ChannelGroup] = field(repr=False, default_factory=list)

    def save(self, directory: str | Path, *, force: bool = False) -> Path:
        """Writes the pruned model as an artifact folder (``foadx.load_pruned`` reads it)."""
        return save_artifact(self.model, directory, force=force)


@dataclass
class _Analysis:
    """The unpruned network as the pruner sees it (a copy on the target device)."""

    network: nn.Module
    example: Tensor
    dependency_graph: Any
    output_layers: list[str]
    all_groups: list[ChannelGroup]
    chosen: list[ChannelGroup]
    cost_model: CostModel


class FiniteBatches:
    """Re-iterable calibration batches, each checked to hold only finite values: a NaN image
    would make every similarity NaN and the selection meaningless."""

    def __init__(self, batches: Iterable[Tensor]) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        seen = 0
        for batch in self.batches:
            finite = torch.isfinite(batch.reshape(batch.shape[0], -1)).all(dim=1)
            if not bool(finite.all()):
                bad = seen + int((~finite).nonzero()[0])
                raise DataError(f"calibration image {bad} (0-based, in sampling order) holds NaN or inf values")
            seen += batch.shape[0]
            yield batch


def as_batches(images: Tensor | Iterable[Tensor], batch_size: int) -> FiniteBatches:
    """A re-iterable of checked image batches from a tensor (N, C, H, W) or any re-iterable of batches."""
    if isinstance(images, Tensor):
        if images.dim() != 4 or images.shape[0] == 0:
            raise DataError(f"calibration images must be (N, C, H, W) with N > 0, got {tuple(images.shape)}")
        return FiniteBatches([images[start : start + batch_size] for start in range(0, images.shape[0], batch_size)])
    return FiniteBatches(images)


def select_groups(
    groups: list[ChannelGroup], include_coupled: bool, exclude: Iterable[str]
) -> list[ChannelGroup]:
    excluded = set(exclude)
    unknown = excluded - {group.name for group in groups}
    if unknown:
        raise BadInputError(f"unknown group(s) to exclude: {', '.join(sorted(unknown))} (see `foadx inspect`)")
    return [
        group
        for group in groups
        if group.unsupported is None
        and (include_coupled or not group.coupled)
        and group.name not in excluded
    ]


def refuse_pruned(model: nn.Module) -> None:
    """Pruning is one-shot from the original network: a second pass would score already-cut
    maps and its plan could not be rebuilt from the source architecture."""
    provenance = provenance_of(model)
    if provenance is not None and provenance.plan.is_pruned:
        raise BadInputError(
            f"the model is already pruned ({len(provenance.plan.groups)} groups cut by "
            f"{provenance.plan.criterion}); prune the original {provenance.source.spec} once with the budget you want"
        )


def _analyse(model: nn.Module, first: Tensor, device: torch.device, include_coupled: bool,
             exclude: Iterable[str], budget: Budget) -> _Analysis:
    network = copy.deepcopy(model).to(device).eval()
    example = first[:2].to(device)
    output_layers = find_output_layers(network, example)
    dependency_graph = build_dependency_graph(network, example)
    all_groups = discover_groups(network, dependency_graph, output_layers)
    chosen = select_groups(all_groups, include_coupled, exclude)
    if not chosen:
        raise BadInputError("the model has no prunable channel groups in the chosen scope")
    for label, named in (("--ratios", budget.ratios), ("the widths", budget.widths)):
        unknown = set(named or {}) - {group.name for group in chosen}
        if unknown:
            raise BudgetError(f"{label} name groups not prunable here: {', '.join(sorted(unknown))}")
    return _Analysis(network, example, dependency_graph, output_layers, all_groups, chosen,
                     CostModel(network, chosen, example))


def prunable_groups(model: nn.Module, example: Tensor, include_coupled: bool = False,
                    exclude: Iterable[str] = ()) -> list[ChannelGroup]:
    """The groups ``prune`` would cut with these scope options (for planning before pruning)."""
    network = copy.deepcopy(model).eval()
    output_layers = find_output_layers(network, example)
    groups = discover_groups(network, build_dependency_graph(network, example), output_layers)
    return select_groups(groups, include_coupled, exclude)


def group_scores(model: nn.Module, images: Tensor | Iterable[Tensor], groups: list[ChannelGroup], criterion: str,
                 *, batch_size: int = 32, seed: int = 0, device: str | torch.device | None = None,
                 progress: ProgressHook | None = None) -> tuple[dict[str, Tensor], bool]:
    """The criterion's scores of every group, folded to channel offsets for grouped convs: FOAD's
    similarity matrices (``True``) or per-offset scores (``False``)."""
    if criterion not in CRITERIA:
        raise BadInputError(f"unknown criterion {criterion!r}: use one of {', '.join(CRITERIA)}")
    target_device = resolve_device(device)
    network = copy.deepcopy(model).to(target_device).eval()
    scores = CRITERIA[criterion].score(
        ScoringInputs(network, groups, as_batches(images, batch_size), target_device, seed, progress))
    return OffsetSpace(groups).to_offsets(scores.values, scores.by_similarity), scores.by_similarity


def _reduction(cost_model: CostModel, progress: ProgressHook | None) -> Callable[[str, Mapping[str, list[int]]], float]:
    """The fractional MACs/params reduction of a candidate plan; each evaluation is one step of
    the budget search, reported as progress."""
    full = cost_model.full
    evaluated = 0

    def reduction_of(metric: str, kept: Mapping[str, list[int]]) -> float:
        nonlocal evaluated
        evaluated += 1
        if progress:
            progress("budget search", evaluated, None)
        cost = cost_model.evaluate({name: len(indices) for name, indices in kept.items()})
        return 1.0 - getattr(cost, metric) / getattr(full, metric)

    return reduction_of


def _state_bytes(model: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def prune(
    model: nn.Module,
    images: Tensor | Iterable[Tensor],
    *,
    criterion: str = "foad",
    t: int | None = None,
    s: float | None = None,
    ratio: float | None = None,
    ratios: Mapping[str, float] | None = None,
    flops_target: float | None = None,
    params_target: float | None = None,
    widths: Mapping[str, int] | None = None,
    round_to: int = 1,
    include_coupled: bool = False,
    exclude: Iterable[str] = (),
    recalibrate_bn: bool = False,
    batch_size: int = 32,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: ProgressHook | None = None,
    calibration: Mapping[str, Any] | None = None,
) -> PruneResult:
    """Prunes a copy of ``model``; the original is left untouched.

    Paper mode (no budget): FOAD greedy with ``t`` (default 2) and ``s`` (default 0.5) per group.
    ``ratio``/``ratios``: exactly k = max(1, C - floor(R*C)) kept per group. ``flops_target``/
    ``params_target``: one (t, s) for all groups reaching that fractional reduction. Every kept
    count is then rounded up to a multiple of ``round_to``. Returns ``.model`` (carrying its plan:
    ``foadx.provenance_of(model).plan``), ``.plan`` and ``.report`` (widths, costs before/after).
    """
    if criterion not in CRITERIA:
        raise BadInputError(f"unknown criterion {criterion!r}: use one of {', '.join(CRITERIA)}")
    if batch_size < 1:
        raise BadInputError(f"batch size must be >= 1, got {batch_size}")
    provenance = require_provenance(model, "pruning (the plan records how to rebuild the architecture)")
    refuse_pruned(model)
    budget = Budget(t, s, ratio, dict(ratios) if ratios is not None else None, flops_target, params_target, round_to)
    if widths is not None:
        budget = replace(budget, widths=dict(widths))
    budget.validate(criterion)
    if criterion != "foad" and (t is not None or s is not None):
        raise BudgetError(f"--t/--s belong to FOAD, not to criterion {criterion}")
    target_device = resolve_device(device)
    batches = as_batches(images, batch_size)
    first = next(iter(batches), None)
    if first is None or first.shape[0] == 0:
        raise DataError("no calibration images were given")

    analysis = _analyse(model, first, target_device, include_coupled, exclude, budget)
    scores = CRITERIA[criterion].score(
        ScoringInputs(analysis.network, analysis.chosen, batches, target_device, seed, progress))
    space = OffsetSpace(analysis.chosen)  # grouped convs: select offsets, cut every group alike
    if budget.widths is not None:
        budget = replace(budget, widths=space.offset_counts(budget.widths))
    reduction_of = space.reduction(_reduction(analysis.cost_model, progress))
    select = select_foad if scores.by_similarity else select_by_scores
    try:
        offsets = select(space.to_offsets(scores.values, scores.by_similarity), budget, reduction_of,
                         space.steps(budget.round_to))
    except BudgetError as error:
        raise BudgetError(f"{error}{_coupled_hint(analysis, include_coupled)}") from error
    selection = replace(offsets, kept=space.to_channels(offsets.kept))
    _refuse_no_op(selection, analysis.chosen, budget)

    pruned = analysis.network
    before, bytes_before = count_cost(pruned, analysis.example), _state_bytes(pruned)
    apply_kept(pruned, analysis.dependency_graph, analysis.chosen, selection.kept)
    _check_runs(pruned, analysis.example)
    recalibrated = 0
    if recalibrate_bn:
        recalibrated = recalibrate_batchnorm(pruned, (b for b in batches if b.shape[0] > 1), target_device)
    after = count_cost(pruned, analysis.example)

    settings = {"ratio": ratio, "ratios": dict(ratios) if ratios is not None else None,
                "flops_target": flops_target, "params_target": params_target, "round_to": round_to,
                **({"widths": dict(widths)} if widths is not None else {}),
                "include_coupled": include_coupled, "exclude": sorted(set(exclude)),
                "recalibrate_bn": recalibrate_bn, "seed": seed}
    calibration_record = {**(calibration or {}), "images": scores.images or None, "batch_size": batch_size}
    plan = _plan(provenance, criterion, selection, settings, calibration_record, analysis)
    record_provenance(pruned, provenance.with_plan(plan))
    report = _report(plan, analysis.all_groups, before, after, bytes_before, _state_bytes(pruned), recalibrated)
    return PruneResult(pruned, plan, report, analysis.all_groups)


def _coupled_hint(analysis: _Analysis, include_coupled: bool) -> str:
    coupled = [group for group in analysis.all_groups if group.coupled and group.unsupported is None]
    if include_coupled or not coupled:
        return ""
    return f"; --include-coupled also prunes the {len(coupled)} residual-coupled group(s) and may reach it"


def _refuse_no_op(selection: Selection, groups: list[ChannelGroup], budget: Budget) -> None:
    """A budget that removes nothing is a mistake to report, not an artifact to write."""
    if any(len(selection.kept[group.name]) < group.channels for group in groups):
        return
    widest = max(group.channels for group in groups)
    reason = (f"--round-to {budget.round_to} is not below the widest group ({widest} channels)"
              if budget.round_to >= widest else "the budget keeps every channel (a threshold s above every similarity?)")
    raise BudgetError(f"nothing would be pruned: {reason}")


def _check_runs(pruned: nn.Module, example: Tensor) -> None:
    """The cut network must still run: a dependency the tracer missed shows up here, as a clear
    refusal instead of a broken artifact."""
    try:
        with torch.no_grad():
            pruned(example)
    except RuntimeError as error:
        raise BadInputError(
            f"cutting the chosen groups broke the network ({str(error).splitlines()[0]}); leave the group "
            "named there whole with --exclude, or report the model"
        ) from error


def _plan(provenance: Provenance, criterion: str, selection: Selection, settings: dict[str, Any],
          calibration: dict[str, Any], analysis: _Analysis) -> Plan:
    groups = tuple(PlanGroup(group.name, group.channels, tuple(selection.kept[group.name]), group.coupled)
                   for group in analysis.chosen)
    return replace(
        provenance.plan, groups=groups, criterion=criterion,
        parameters={"t": selection.t, "s": selection.s, **settings}, calibration=calibration,
        output_layers=tuple(analysis.output_layers),
    )


def _reduction_fraction(before: int, after: int) -> float:
    return 0.0 if before == 0 else 1.0 - after / before


def _report(
    plan: Plan,
    all_groups: list[ChannelGroup],
    before: ModelCost,
    after: ModelCost,
    bytes_before: int,
    bytes_after: int,
    recalibrated: int,
) -> dict[str, Any]:
    pruned_widths = {group.name: len(group.kept) for group in plan.groups}
    return {
        "kind": "foadx.prune",
        "criterion": plan.criterion,
        "weights": plan.weights_origin,
        "t": plan.parameters["t"],
        "s": plan.parameters["s"],
        "round_to": plan.parameters["round_to"],
        "calibration_images": plan.calibration["images"],
        "bn_recalibration_images": recalibrated,
        "input_shape": [3, *plan.model.input_size],
        "plan_digest": plan.digest(),
        "groups": [
            {
                "name": group.name,
                "before": group.channels,
                "after": pruned_widths.get(group.name, group.channels),
                "pruned": group.name in pruned_widths,
                "coupled": group.coupled,
                "note": group.unsupported,
            }
            for group in all_groups
        ],
        "params": {"before": before.params, "after": after.params,
                   "reduction": _reduction_fraction(before.params, after.params)},
        "macs": {"before": before.macs, "after": after.macs,
                 "reduction": _reduction_fraction(before.macs, after.macs)},
        "weights_bytes": {"before": bytes_before, "after": bytes_after,
                          "reduction": _reduction_fraction(bytes_before, bytes_after)},
    }


def inspect_model(model: nn.Module, example: Tensor) -> dict[str, Any]:
    """Groups, widths and costs of a model, as ``foadx inspect`` prints them."""
    model = model.eval()
    output_layers = find_output_layers(model, example)
    dependency_graph = build_dependency_graph(model, example)
    groups = discover_groups(model, dependency_graph, output_layers)
    cost = count_cost(model, example)
    return {
        "output_layers": output_layers,
        "params": cost.params,
        "macs": cost.macs,
        "groups": [
            {
                "name": g.name,
                "channels": g.channels,
                "coupled": g.coupled,
                "default": g.prunable_by_default,
                "producers": list(g.producers),
                "note": g.unsupported,
            }
            for g in groups
        ],
    }
