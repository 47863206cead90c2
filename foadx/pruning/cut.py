"""Cutting, the third phase of pruning: a budget turned into kept indices and a smaller network.

``choose`` selects the kept channels of every chosen group from one analysis and one scoring;
``cut`` applies them to a fresh copy of the analysed network (re-traced: a deep copy of
torch-pruning's graph recurses once per node and overflows Python's stack on deep networks), so
the same analysis and scores can be cut at any number of budgets. The cut network carries its
plan (its provenance), so saving, exporting and benchmarking it later know what it is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from foadx.errors import BadInputError, BudgetError
from foadx.module_copy import copy_module
from foadx.pruning.analysis import Analysis
from foadx.pruning.apply import apply_kept
from foadx.pruning.artifact import save_artifact
from foadx.pruning.batchnorm import recalibrate_batchnorm
from foadx.pruning.cost import CostModel, ModelCost, count_cost
from foadx.pruning.features import ProgressHook
from foadx.pruning.groups import ChannelGroup, build_dependency_graph
from foadx.pruning.offsets import OffsetSpace
from foadx.pruning.scoring import ChannelScores
from foadx.pruning.select import Budget, Selection, select_by_scores, select_foad
from foadx.provenance import Plan, PlanGroup, record_provenance
from foadx.report.kinds import envelope


@dataclass
class PruneResult:
    """The pruned network (carrying its plan: ``foadx.provenance_of(model).plan``), the plan,
    the report (widths, costs before/after) and every channel group of the unpruned network."""

    model: nn.Module
    plan: Plan
    report: dict[str, Any]
    groups: list[ChannelGroup] = field(repr=False, default_factory=list)

    def save(self, directory: str | Path, *, force: bool = False) -> Path:
        """Writes the pruned model as an artifact folder (``foadx.load_pruned`` reads it).

        Raises:
            ArtifactError: the model's architecture cannot be rebuilt (no spec), or the folder is refused.
        """
        return save_artifact(self.model, directory, force=force)


def check_budget(budget: Budget, criterion: str, analysis: Analysis | None = None) -> None:
    """Refuses a budget that is malformed, foreign to ``criterion``, or (given the analysis)
    names groups outside its chosen scope.

    Raises:
        BudgetError: with the library's parameter names.
    """
    budget.validate(criterion)
    if criterion != "foad" and (budget.t is not None or budget.s is not None):
        raise BudgetError(f"t and s belong to FOAD, not to criterion {criterion}")
    if analysis is None:
        return
    chosen = {group.name for group in analysis.chosen}
    for label, named in (("ratios", budget.ratios), ("widths", budget.widths)):
        refused = sorted(set(named or {}) - chosen)
        if refused:
            reasons = "; ".join(f"{name} ({_not_chosen_because(name, analysis)})" for name in refused)
            raise BudgetError(f"{label} name groups not prunable here: {reasons}",
                              parameters=(label, "include_coupled", "exclude"))


def _not_chosen_because(name: str, analysis: Analysis) -> str:
    """Why the group or layer ``name`` is outside the analysis's chosen scope, in a few words."""
    if name in analysis.output_layers:
        return ("it produces a model output (its channels reach a tensor forward returns), "
                "and outputs keep their shape: never pruned")
    group = next((group for group in analysis.all_groups if group.name == name), None)
    if group is None:
        return "no such group (inspect lists the groups)"
    if group.unsupported is not None:
        return f"never pruned ({group.unsupported})"
    if name in analysis.exclude:
        return "it is in exclude"
    return "a coupled group (a residual add, concat or several producers): add include_coupled"


def choose(analysis: Analysis, scores: ChannelScores, budget: Budget,
           progress: ProgressHook | None = None) -> Selection:
    """The kept channel indices of every chosen group under ``budget`` (nothing is cut).

    Raises:
        BudgetError: the budget is malformed, unreachable, or removes nothing.
    """
    check_budget(budget, scores.criterion, analysis)
    space = OffsetSpace(analysis.chosen)  # grouped convs: select offsets, cut every group alike
    offset_budget = budget if budget.widths is None else replace(budget, widths=space.offset_counts(budget.widths))
    reduction_of = space.reduction(_reduction(analysis.cost_model, progress))
    select = select_foad if scores.by_similarity else select_by_scores
    try:
        offsets = select(scores.offsets(analysis.chosen), offset_budget, reduction_of, space.steps(budget.round_to))
    except BudgetError as error:
        hint = _coupled_hint(analysis)
        raise BudgetError(f"{error}{hint}", parameters=error.parameters + (("include_coupled",) if hint else ())) from error
    selection = replace(offsets, kept=space.to_channels(offsets.kept))
    _refuse_no_op(selection, analysis.chosen, budget)
    return selection


def cut(analysis: Analysis, scores: ChannelScores, budget: Budget, *, recalibrate_bn: bool = False,
        images: Iterable[Tensor] | None = None, calibration: Mapping[str, Any] | None = None,
        progress: ProgressHook | None = None, last: bool = False) -> PruneResult:
    """Cuts a copy of the analysed network to the channels ``choose`` keeps; ``analysis`` and
    ``scores`` are left as they were, ready for another cut.

    Args:
        last: cut the analysed network itself with its traced graph (no copy, no second trace):
            the analysis is used up, for a caller that cuts once (``foadx.prune``).
        recalibrate_bn: re-estimate BatchNorm statistics on ``images`` (batches of > 1 image).
        calibration: what the images were (recorded in the plan beside their count and batch size).

    Raises:
        BudgetError: see ``choose``.
        BadInputError: the cut network no longer runs, or ``recalibrate_bn`` without images.
    """
    if recalibrate_bn and images is None:
        raise BadInputError("recalibrate_bn needs the calibration images")
    selection = choose(analysis, scores, budget, progress)
    pruned = analysis.network if last else copy_module(analysis.network)
    before, bytes_before = count_cost(pruned, analysis.example), _state_bytes(pruned)
    graph = analysis.dependency_graph if last else build_dependency_graph(pruned, analysis.example)
    apply_kept(pruned, graph, analysis.chosen, selection.kept)
    _check_runs(pruned, analysis.example)
    recalibrated = 0
    if recalibrate_bn:
        recalibrated = recalibrate_batchnorm(pruned, (b for b in images if b.shape[0] > 1), analysis.device)
    after = count_cost(pruned, analysis.example)
    calibration_record = {**(calibration or {}), "images": scores.images or None, "batch_size": scores.batch_size}
    plan = _plan(analysis, scores, selection, _settings(analysis, scores, budget, recalibrate_bn), calibration_record)
    record_provenance(pruned, analysis.provenance.with_plan(plan))
    report = _report(plan, analysis.all_groups, before, after, bytes_before, _state_bytes(pruned), recalibrated)
    return PruneResult(pruned, plan, report, analysis.all_groups)


def _settings(analysis: Analysis, scores: ChannelScores, budget: Budget, recalibrate_bn: bool) -> dict[str, Any]:
    return {"ratio": budget.ratio, "ratios": dict(budget.ratios) if budget.ratios is not None else None,
            "flops_target": budget.flops_target, "params_target": budget.params_target, "round_to": budget.round_to,
            **({"widths": dict(budget.widths)} if budget.widths is not None else {}),
            "include_coupled": analysis.include_coupled, "exclude": list(analysis.exclude),
            "recalibrate_bn": recalibrate_bn, "seed": scores.seed}


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


def _coupled_hint(analysis: Analysis) -> str:
    coupled = [group for group in analysis.all_groups if group.coupled and group.unsupported is None]
    if analysis.include_coupled or not coupled:
        return ""
    return f"; include_coupled also prunes the {len(coupled)} residual-coupled group(s) and may reach it"


def _refuse_no_op(selection: Selection, groups: list[ChannelGroup], budget: Budget) -> None:
    """A budget that removes nothing is a mistake to report, not an artifact to write."""
    if any(len(selection.kept[group.name]) < group.channels for group in groups):
        return
    widest = max(group.channels for group in groups)
    reason = (f"round_to={budget.round_to} is not below the widest group ({widest} channels)"
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
            "named there whole (exclude=[...]), or report the model"
        ) from error


def _plan(analysis: Analysis, scores: ChannelScores, selection: Selection, settings: dict[str, Any],
          calibration: dict[str, Any]) -> Plan:
    groups = tuple(PlanGroup(group.name, group.channels, tuple(selection.kept[group.name]), group.coupled)
                   for group in analysis.chosen)
    return replace(
        analysis.provenance.plan, groups=groups, criterion=scores.criterion,
        parameters={"t": selection.t, "s": selection.s, **settings}, calibration=calibration,
        output_layers=tuple(analysis.output_layers),
    )


def _reduction_fraction(before: int, after: int) -> float:
    return 0.0 if before == 0 else 1.0 - after / before


def _report(plan: Plan, all_groups: list[ChannelGroup], before: ModelCost, after: ModelCost, bytes_before: int,
            bytes_after: int, recalibrated: int) -> dict[str, Any]:
    pruned_widths = {group.name: len(group.kept) for group in plan.groups}
    return envelope("foadx.prune", {
        "criterion": plan.criterion, "weights": plan.weights_origin,
        "t": plan.parameters["t"], "s": plan.parameters["s"], "round_to": plan.parameters["round_to"],
        "calibration_images": plan.calibration["images"], "bn_recalibration_images": recalibrated,
        "input_shape": list(plan.model.input_chw), "plan_digest": plan.digest(),
        "groups": [{"name": group.name, "before": group.channels,
                    "after": pruned_widths.get(group.name, group.channels), "pruned": group.name in pruned_widths,
                    "coupled": group.coupled, "note": group.unsupported} for group in all_groups],
        "params": {"before": before.params, "after": after.params,
                   "reduction": _reduction_fraction(before.params, after.params)},
        "macs": {"before": before.macs, "after": after.macs, "reduction": _reduction_fraction(before.macs, after.macs)},
        "weights_bytes": {"before": bytes_before, "after": bytes_after,
                          "reduction": _reduction_fraction(bytes_before, bytes_after)},
    })
