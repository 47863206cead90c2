"""``profile`` (a latency table for a model on a backend) and ``prune_to_latency`` (FOAD to a
measured latency target): the library side of ``foadx profile`` and ``foadx prune
--latency-target``. The method, with its equations, is docs/latency.md."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from foadx.errors import BadInputError, BudgetError, CheckFailedError
from foadx.latency.measure import measure_network, measure_networks, measure_units
from foadx.latency.plan import (
    Planner,
    WidthPlan,
    candidate_widths,
    legal_widths,
    unit_keys_to_profile,
)
from foadx.latency.table import LatencyTable, check_compatible, environment_key
from foadx.latency.units import find_units
from foadx.latency.values import distortion_values
from foadx.provenance import provenance_of, record_provenance, require_provenance
from foadx.pruning.analysis import Analysis, analyse
from foadx.pruning.api import refuse_pruned
from foadx.pruning.batches import as_batches
from foadx.pruning.cut import PruneResult, choose, cut
from foadx.pruning.groups import ChannelGroup
from foadx.pruning.scoring import ChannelScores, check_criterion, score_channels
from foadx.pruning.select import Budget
from foadx.runtime.environment import describe_environment
from foadx.runtime.registry import check_profiling_backend, width_step

TARGET_TOLERANCE = 0.05  # the measured latency may exceed the target by this fraction
DEFAULT_ROUNDS = 3
ALLOCATIONS = ("knapsack", "global")
BISECTION_STEPS = 7  # on the MACs fraction: 0.9 / 2^7, under 1% of the MACs
CHECK_FRACTIONS = (0.75, 0.5, 0.25)  # uniform widths of the whole networks a table is checked on


@dataclass(frozen=True)
class LatencyTarget:
    """A latency target: ``kind`` "ms" (``value`` in milliseconds) or "speedup" (``value`` times
    faster than the unpruned model)."""

    kind: str  # "ms" or "speedup"
    value: float

    @classmethod
    def parse(cls, text: str) -> LatencyTarget:
        """``2.0ms`` (milliseconds) or ``2.5x`` (a speedup over the unpruned model).

        Raises:
            BadInputError: another form, or a value that is not > 0 (CLI exit code 3).
        """
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|x)\s*", str(text))
        if not match or float(match.group(1)) <= 0:
            raise BadInputError(f"a latency target must look like 2.0ms or 2.5x, got {text!r}")
        return cls(match.group(2).replace("x", "speedup"), float(match.group(1)))

    def milliseconds(self, unpruned_ms: float) -> float:
        """The target in ms, given the unpruned model's latency in ms (a speedup divides it)."""
        return self.value if self.kind == "ms" else unpruned_ms / self.value


def _model_id(model: nn.Module) -> str:
    plan = require_provenance(model, "latency profiling").plan
    return f"{plan.model.spec}@{plan.digest()[:16]}"


def _setting(model: nn.Module, batch: int, include_coupled: bool, exclude: Iterable[str], device: Any = "cpu"):
    """The model's source, its one analysis (on ``device``) and its latency units."""
    source = require_provenance(model, "latency profiling").source
    example = torch.zeros(2, *source.input_chw)
    analysis = analyse(model, example, include_coupled=include_coupled, exclude=exclude, device=device)
    return source, analysis, find_units(model.eval(), example[:1], analysis.chosen, batch)


def _empty_table(model: nn.Module, backend: str, batch: int, round_to: int, network_ms: float) -> LatencyTable:
    size = require_provenance(model, "latency profiling").source.input_size
    return LatencyTable(_model_id(model), tuple(size), batch, backend, "fp32", round_to,
                        environment_key(describe_environment()), network_ms)


def profile(model: nn.Module, backend: str = "ort-cpu", *, batch: int = 1, round_to: int | None = None,
            include_coupled: bool = False, exclude: Iterable[str] = (),
            progress: Callable[[int, int], None] | None = None) -> LatencyTable:
    """Measures the latency table of ``model`` on ``backend``: every unit at full width and at
    every legal width of the groups that set it, and the whole network (docs/latency.md section 1).

    Args:
        model: a module foadx built or loaded (its provenance gives the input (C, H, W)).
        batch: the batch size timed.
        round_to: the width step of the legal widths; None takes the backend's ``width_step``.
        include_coupled: also profile residual-coupled groups (as in ``foadx.prune``).
        exclude: names of groups to leave whole (as in ``foadx.prune``).
        progress: called with (units done, units in all).

    Returns:
        The table, with its whole-network check points at 75%, 50% and 25% widths.

    Raises:
        BadInputError: a backend that cannot be latency-profiled, ``batch`` or ``round_to`` < 1,
            or a module without foadx provenance (CLI exit code 3).
        MissingDependencyError: the backend's runtime or GPU is absent (exit code 6).
    """
    check_profiling_backend(backend)
    if batch < 1:
        raise BadInputError(f"batch must be >= 1, got {batch}")
    round_to = width_step(backend) if round_to is None else round_to
    if round_to < 1:
        raise BadInputError(f"round_to must be >= 1, got {round_to}")
    source, analysis, units = _setting(model, batch, include_coupled, exclude)
    measured = measure_units(unit_keys_to_profile(units, analysis.chosen, round_to), backend, progress=progress)
    network = measure_network(model, backend, source.input_chw, batch)
    table = _empty_table(model, backend, batch, round_to, network["median_ms"])
    for key, ms in measured.items():
        table.add(key, ms)
    _check_whole_networks(table, model, analysis, units, backend, batch)
    return table


def uniform_widths(groups: list[ChannelGroup], fraction: float, round_to: int) -> dict[str, int]:
    """Every group at the legal width nearest ``fraction`` of its channels."""
    return {group.name: min(legal_widths(group, round_to), key=lambda width: abs(width - fraction * group.channels))
            for group in groups}


def _check_whole_networks(table: LatencyTable, model: nn.Module, analysis: Analysis, units: list,
                          backend: str, batch: int) -> None:
    """Times whole networks at uniform widths, each beside the unpruned one: the points of the
    savings curve that maps the units' predicted savings onto measured ones. One random scoring
    (it looks at no activations) is cut at each width."""
    groups = analysis.chosen
    planner = Planner(table, units, groups, {})
    scores = score_channels(analysis, analysis.example, "random")
    for fraction in CHECK_FRACTIONS:
        widths = uniform_widths(groups, fraction, table.round_to)
        pruned = cut(analysis, scores, Budget(widths=widths)).model
        both = measure_networks({"unpruned": model.eval(), "pruned": pruned}, backend,
                                analysis.provenance.source.input_chw, batch)
        table.checks.append({"fraction": fraction, "predicted_saving": planner.relative_saving(widths),
                             "measured_saving": 1.0 - both["pruned"]["median_ms"] / both["unpruned"]["median_ms"]})


def _values(model: nn.Module, images: Any, analysis: Analysis, scores: ChannelScores, round_to: int,
            device: Any) -> dict[str, dict[int, float]]:
    groups = analysis.chosen
    widths = {group.name: legal_widths(group, round_to) for group in groups}
    return distortion_values(model, images, groups, scores.offsets(groups), scores.by_similarity, widths, device)


def prune_to_latency(
        model: nn.Module, images: Tensor | Iterable[Tensor], target: LatencyTarget | str, *, backend: str = "ort-cpu",
        table: LatencyTable | None = None, allow_foreign_lut: bool = False, criterion: str = "foad", batch: int = 1,
        round_to: int | None = None, include_coupled: bool = False, exclude: Iterable[str] = (),
        recalibrate_bn: bool = False, batch_size: int = 32, seed: int = 0, device: Any = None,
        max_rounds: int = DEFAULT_ROUNDS, min_keep: float = 0.0, allocation: str = "knapsack",
        calibration: dict[str, Any] | None = None) -> PruneResult:
    """Prunes ``model`` to run within ``target`` on ``backend``, measured: plan widths on the
    table, cut, measure beside the unpruned network, refit the savings curve, plan again (at most
    ``max_rounds`` rounds). ``allocation``: ``knapsack`` sets each group's width (docs/latency.md
    section 4); ``global`` bisects the criterion's one budget for all groups (FOAD's one (t, s)).

    Args:
        model: an unpruned module foadx built or loaded.
        images: calibration batches (N, C, H, W), normalised as the model expects.
        target: a ``LatencyTarget`` or its text (``2.0ms``, ``2.5x``); met when the measured
            median is within 5% of it.
        table: a profiled table; None profiles one first. ``allow_foreign_lut`` accepts one
            measured in another environment.
        round_to: the width step; None takes the table's (profiled with the backend's).
        min_keep: the fraction of each group's channels always kept, in [0, 1].

    Returns:
        The ``PruneResult``; its plan's ``parameters["latency"]`` and its report record the
        target, the table's digest and every measured round (ms).

    Raises:
        BadInputError: an unknown allocation or criterion, ``min_keep`` outside [0, 1], a pruned
            model, a backend that cannot be profiled, a malformed target, or a table made for
            another model, size, batch, backend, precision or environment (CLI exit code 3).
        BudgetError: the unpruned model already meets the target, or a global budget cannot
            reach it (exit code 3).
        CheckFailedError: the target is missed in all ``max_rounds`` measured rounds (exit code 4).
        MissingDependencyError: the backend's runtime or GPU is absent (exit code 6).
    """
    target = target if isinstance(target, LatencyTarget) else LatencyTarget.parse(target)
    _check_request(model, allocation, min_keep, criterion, batch_size, backend)
    images = as_batches(images, batch_size)
    if table is None:
        table = profile(model, backend, batch=batch, round_to=round_to, include_coupled=include_coupled, exclude=exclude)
    same_machine = _checked_table(model, table, target, backend, batch, allow_foreign_lut)
    source, analysis, units = _setting(model, batch, include_coupled, exclude, device)
    scores = score_channels(analysis, images, criterion, batch_size=batch_size, seed=seed)  # the one scoring pass
    values = _values(model, images, analysis, scores, table.round_to, device) if allocation == "knapsack" else {}
    measure = (lambda keys: measure_units(keys, backend)) if same_machine else None
    planner = Planner(table, units, analysis.chosen, values, measure)
    candidates = {group.name: candidate_widths(group, table.round_to, min_keep) for group in analysis.chosen}

    def prune_within(budget_ms: float) -> tuple[WidthPlan, PruneResult]:
        if allocation == "knapsack":
            plan = planner.plan(budget_ms, candidates)
            budget = Budget(widths=plan.widths)
        else:
            plan, flops_target = _global_plan(analysis, scores, planner, budget_ms, table.round_to)
            budget = Budget(flops_target=flops_target, round_to=table.round_to)
        return plan, cut(analysis, scores, budget, recalibrate_bn=recalibrate_bn, images=images, calibration=calibration)

    return _measured_rounds(model, prune_within, planner, table, _Goal(target, backend, batch, max_rounds, allocation),
                            source.input_chw)


def _checked_table(model: nn.Module, table: LatencyTable, target: LatencyTarget, backend: str, batch: int,
                   allow_foreign: bool) -> bool:
    """Refuses a table made for another model, size, batch, backend or environment (unless
    ``allow_foreign``) and a target the unpruned model already meets; True when the table was
    measured in this environment (then missing entries may be measured now)."""
    here = _empty_table(model, backend, batch, table.round_to, table.network_ms)
    check_compatible(table, here, allow_foreign)
    target_ms = target.milliseconds(table.network_ms)
    if target_ms >= table.network_ms:
        raise BudgetError(f"the unpruned model already runs in {table.network_ms:.3f} ms on {backend} (batch {batch}), "
                          f"within the {target_ms:.3f} ms target: nothing to prune")
    return table.environment == here.environment


@dataclass(frozen=True)
class _Goal:
    """What a latency prune must reach, where: the target, the backend and batch it is timed on,
    the rounds allowed and the allocation recorded."""

    target: LatencyTarget
    backend: str
    batch: int
    max_rounds: int
    allocation: str


def _measured_rounds(model: nn.Module, prune_within: Callable[[float], tuple[WidthPlan, PruneResult]],
                     planner: Planner, table: LatencyTable, goal: _Goal, input_chw: tuple[int, int, int]) -> PruneResult:
    """Prunes within a budget, times the result beside the unpruned network, and plans again on
    the bent savings curve until the target holds (at most ``goal.max_rounds`` rounds).

    Raises:
        CheckFailedError: the target is missed in every round.
    """
    target = goal.target
    target_ms = target.milliseconds(table.network_ms)
    effective, rounds = target_ms, []
    for _ in range(goal.max_rounds):
        plan, result = prune_within(effective)
        both = measure_networks({"unpruned": model.eval(), "pruned": result.model.cpu()}, goal.backend, input_chw,
                                goal.batch)
        measured, unpruned_ms = both["pruned"], both["unpruned"]["median_ms"]
        if target.kind == "speedup":  # against the unpruned network timed alongside, not the table's old figure
            target_ms = target.milliseconds(unpruned_ms)
        rounds.append({"budget_ms": effective, "predicted_ms": plan.predicted_ms, "measured_ms": measured["median_ms"],
                       "p90_ms": measured["p90_ms"], "unpruned_ms": unpruned_ms,
                       "table_saving": planner.relative_saving(plan.widths), "neighbour_rounds": plan.neighbour_rounds})
        if measured["median_ms"] <= target_ms * (1 + TARGET_TOLERANCE):
            return _record(result, table, target, target_ms, goal.backend, goal.batch, rounds, goal.allocation)
        planner.observe(plan.widths, measured["median_ms"], unpruned_ms)
        effective = target_ms * table.network_ms / unpruned_ms  # the target in the table's machine state
    raise CheckFailedError(f"latency target {target_ms:.3f} ms missed after {goal.max_rounds} measured rounds: "
                           + ", ".join(f"{r['measured_ms']:.3f} ms (predicted {r['predicted_ms']:.3f})" for r in rounds))


def _check_request(model: nn.Module, allocation: str, min_keep: float, criterion: str, batch_size: int,
                   backend: str) -> None:
    """Refuses, before any work, a latency prune that cannot run (BadInputError, or the
    backend's missing dependency)."""
    if allocation not in ALLOCATIONS:
        raise BadInputError(f"allocation must be one of {', '.join(ALLOCATIONS)}, got {allocation!r}")
    if not 0.0 <= min_keep <= 1.0:
        raise BadInputError(f"min_keep must be a fraction in [0, 1], got {min_keep}")
    check_criterion(criterion, batch_size)
    refuse_pruned(model)
    check_profiling_backend(backend)


def _widths_of(kept: dict[str, list[int]], planner: Planner) -> dict[str, int]:
    return {name: len(kept[name]) if name in kept else group.channels for name, group in planner.groups.items()}


def _global_plan(analysis: Analysis, scores: ChannelScores, planner: Planner, target_ms: float,
                 round_to: int) -> tuple[WidthPlan, float]:
    """The criterion's own global budget (a MACs fraction, FOAD's one (t, s) for all groups),
    bisected to the weakest one whose widths the table predicts within ``target_ms``: each
    step chooses channels from the one scoring, nothing is cut. Returns the plan and the fraction."""
    low, high, best = 0.0, 0.95, None
    for _ in range(BISECTION_STEPS):
        middle = (low + high) / 2
        try:
            selection = choose(analysis, scores, Budget(flops_target=middle, round_to=round_to))
        except BudgetError:  # beyond what the criterion's budget can reach
            high = middle
            continue
        widths = _widths_of(selection.kept, planner)
        predicted = planner.predict(widths)
        if predicted <= target_ms:
            high, best = middle, (WidthPlan(widths, predicted, 0), middle)
        else:
            low = middle
    if best is None:
        raise BudgetError(f"the latency target {target_ms:.3f} ms is out of reach of a global budget: "
                          f"at {high:.0%} fewer MACs the table still predicts more")
    return best


def _record(result: PruneResult, table: LatencyTable, target: LatencyTarget, target_ms: float, backend: str,
            batch: int, rounds: list[dict[str, float]], allocation: str) -> PruneResult:
    latency = {"target": f"{target.value:g}{'ms' if target.kind == 'ms' else 'x'}", "target_ms": target_ms,
               "allocation": allocation, "round_to": table.round_to,
               "backend": backend, "batch": batch, "unpruned_ms": rounds[-1]["unpruned_ms"],
               "table_unpruned_ms": table.network_ms, "lut_digest": table.digest(),
               "predicted_ms": rounds[-1]["predicted_ms"], "measured_ms": rounds[-1]["measured_ms"],
               "measured_p90_ms": rounds[-1]["p90_ms"], "rounds": rounds}
    provenance = provenance_of(result.model)
    plan = replace(provenance.plan, parameters={**provenance.plan.parameters, "latency": latency})
    record_provenance(result.model, provenance.with_plan(plan))
    result.plan = plan
    result.report["latency"] = latency
    return result
