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
from foadx.pruning.api import (
    PruneResult,
    as_batches,
    group_scores,
    prunable_groups,
    prune,
)
from foadx.pruning.groups import ChannelGroup
from foadx.runtime.environment import describe_environment
from foadx.runtime.registry import check_profiling_backend, width_step

TARGET_TOLERANCE = 0.05  # the measured latency may exceed the target by this fraction
DEFAULT_ROUNDS = 3
ALLOCATIONS = ("knapsack", "global")
BISECTION_STEPS = 7  # on the MACs fraction: 0.9 / 2^7, under 1% of the MACs
CHECK_FRACTIONS = (0.75, 0.5, 0.25)  # uniform widths of the whole networks a table is checked on


@dataclass(frozen=True)
class LatencyTarget:
    kind: str  # "ms" or "speedup"
    value: float

    @classmethod
    def parse(cls, text: str) -> LatencyTarget:
        """``2.0ms`` (milliseconds) or ``2.5x`` (a speedup over the unpruned model)."""
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|x)\s*", str(text))
        if not match or float(match.group(1)) <= 0:
            raise BadInputError(f"--latency-target must look like 2.0ms or 2.5x, got {text!r}")
        return cls(match.group(2).replace("x", "speedup"), float(match.group(1)))

    def milliseconds(self, unpruned_ms: float) -> float:
        return self.value if self.kind == "ms" else unpruned_ms / self.value


def _model_id(model: nn.Module) -> str:
    plan = require_provenance(model, "latency profiling").plan
    return f"{plan.model.spec}@{plan.digest()[:16]}"


def _setting(model: nn.Module, batch: int, include_coupled: bool, exclude: Iterable[str]):
    source = require_provenance(model, "latency profiling").source
    example = torch.zeros(1, 3, *source.input_size)
    groups = prunable_groups(model, example, include_coupled, exclude)
    if not groups:
        raise BadInputError("the model has no prunable channel groups in the chosen scope")
    return source, groups, find_units(model.eval(), example, groups, batch)


def _empty_table(model: nn.Module, backend: str, batch: int, round_to: int, network_ms: float) -> LatencyTable:
    size = require_provenance(model, "latency profiling").source.input_size
    return LatencyTable(_model_id(model), tuple(size), batch, backend, "fp32", round_to,
                        environment_key(describe_environment()), network_ms)


def profile(model: nn.Module, backend: str = "ort-cpu", *, batch: int = 1, round_to: int | None = None,
            include_coupled: bool = False, exclude: Iterable[str] = (),
            progress: Callable[[int, int], None] | None = None) -> LatencyTable:
    """Measures the latency table of ``model`` on ``backend``: every unit at full width and at
    every legal width of the groups that set it, and the whole network."""
    check_profiling_backend(backend)
    if batch < 1:
        raise BadInputError(f"batch must be >= 1, got {batch}")
    round_to = width_step(backend) if round_to is None else round_to
    if round_to < 1:
        raise BadInputError(f"round_to must be >= 1, got {round_to}")
    source, groups, units = _setting(model, batch, include_coupled, exclude)
    measured = measure_units(unit_keys_to_profile(units, groups, round_to), backend, progress=progress)
    network = measure_network(model, backend, (3, *source.input_size), batch)
    table = _empty_table(model, backend, batch, round_to, network["median_ms"])
    for key, ms in measured.items():
        table.add(key, ms)
    _check_whole_networks(table, model, groups, units, backend, batch)
    return table


def uniform_widths(groups: list[ChannelGroup], fraction: float, round_to: int) -> dict[str, int]:
    """Every group at the legal width nearest ``fraction`` of its channels."""
    return {group.name: min(legal_widths(group, round_to), key=lambda width: abs(width - fraction * group.channels))
            for group in groups}


def _check_whole_networks(table: LatencyTable, model: nn.Module, groups: list[ChannelGroup], units: list,
                          backend: str, batch: int) -> None:
    """Times whole networks at uniform widths, each beside the unpruned one: the points of the
    savings curve that maps the units' predicted savings onto measured ones."""
    planner = Planner(table, units, groups, {})
    blank = torch.zeros(2, 3, *table.input_size)  # the random criterion looks at no activations
    for fraction in CHECK_FRACTIONS:
        widths = uniform_widths(groups, fraction, table.round_to)
        pruned = prune(model, blank, criterion="random", widths=widths).model
        both = measure_networks({"unpruned": model.eval(), "pruned": pruned}, backend, (3, *table.input_size), batch)
        table.checks.append({"fraction": fraction, "predicted_saving": planner.relative_saving(widths),
                             "measured_saving": 1.0 - both["pruned"]["median_ms"] / both["unpruned"]["median_ms"]})


def _values(model: nn.Module, images: Any, groups: list[ChannelGroup], criterion: str, round_to: int,
            batch_size: int, seed: int, device: Any) -> dict[str, dict[int, float]]:
    scores, by_similarity = group_scores(model, images, groups, criterion, batch_size=batch_size, seed=seed, device=device)
    widths = {group.name: legal_widths(group, round_to) for group in groups}
    return distortion_values(model, images, groups, scores, by_similarity, widths, device)


def prune_to_latency(
    model: nn.Module,
    images: Tensor | Iterable[Tensor],
    target: LatencyTarget | str,
    *,
    backend: str = "ort-cpu",
    table: LatencyTable | None = None,
    allow_foreign_lut: bool = False,
    criterion: str = "foad",
    batch: int = 1,
    round_to: int | None = None,
    include_coupled: bool = False,
    exclude: Iterable[str] = (),
    recalibrate_bn: bool = False,
    batch_size: int = 32,
    seed: int = 0,
    device: Any = None,
    max_rounds: int = DEFAULT_ROUNDS,
    min_keep: float = 0.0,
    allocation: str = "knapsack",
    calibration: dict[str, Any] | None = None,
) -> PruneResult:
    """Prunes ``model`` so that it runs within ``target`` on ``backend``, measured: plan widths
    on the table, prune with FOAD (or ``criterion``) at those widths, measure beside the unpruned
    network, add it to the savings curve and plan again, until the target holds (at most
    ``max_rounds`` rounds). ``allocation``: ``knapsack`` sets each group's width (section 4 of
    docs/latency.md); ``global`` keeps the criterion's own single budget for all groups (FOAD's
    one (t, s)) and chooses its strength so that the table predicts the target."""
    target = target if isinstance(target, LatencyTarget) else LatencyTarget.parse(target)
    if allocation not in ALLOCATIONS:
        raise BadInputError(f"allocation must be one of {', '.join(ALLOCATIONS)}, got {allocation!r}")
    check_profiling_backend(backend)
    images = as_batches(images, batch_size)
    if table is None:
        table = profile(model, backend, batch=batch, round_to=round_to, include_coupled=include_coupled, exclude=exclude)
    here = _empty_table(model, backend, batch, table.round_to, table.network_ms)
    check_compatible(table, here, allow_foreign_lut)
    same_machine = table.environment == here.environment
    source, groups, units = _setting(model, batch, include_coupled, exclude)
    target_ms = target.milliseconds(table.network_ms)
    if target_ms >= table.network_ms:
        raise BudgetError(f"the unpruned model already runs in {table.network_ms:.3f} ms on {backend} (batch {batch}), "
                          f"within the {target_ms:.3f} ms target: nothing to prune")
    values = _values(model, images, groups, criterion, table.round_to, batch_size, seed, device) if allocation == "knapsack" else {}
    measure = (lambda keys: measure_units(keys, backend)) if same_machine else None
    planner = Planner(table, units, groups, values, measure)
    if not 0.0 <= min_keep <= 1.0:
        raise BadInputError(f"min_keep must be a fraction in [0, 1], got {min_keep}")
    candidates = {group.name: candidate_widths(group, table.round_to, min_keep) for group in groups}
    scope = {"criterion": criterion, "include_coupled": include_coupled, "exclude": exclude,
             "recalibrate_bn": recalibrate_bn, "batch_size": batch_size, "seed": seed, "device": device,
             "calibration": calibration}
    effective, rounds = target_ms, []
    for _ in range(max_rounds):
        if allocation == "knapsack":
            plan = planner.plan(effective, candidates)
            result = prune(model, images, widths=plan.widths, **scope)
        else:
            plan, result = _global_plan(model, images, planner, effective, table.round_to, scope)
        both = measure_networks({"unpruned": model.eval(), "pruned": result.model.cpu()}, backend,
                                 (3, *source.input_size), batch)
        measured, unpruned_ms = both["pruned"], both["unpruned"]["median_ms"]
        if target.kind == "speedup":  # against the unpruned network timed alongside, not the table's old figure
            target_ms = target.milliseconds(unpruned_ms)
        rounds.append({"budget_ms": effective, "predicted_ms": plan.predicted_ms, "measured_ms": measured["median_ms"],
                       "p90_ms": measured["p90_ms"], "unpruned_ms": unpruned_ms,
                       "table_saving": planner.relative_saving(plan.widths), "neighbour_rounds": plan.neighbour_rounds})
        if measured["median_ms"] <= target_ms * (1 + TARGET_TOLERANCE):
            return _record(result, table, target, target_ms, backend, batch, rounds, allocation)
        planner.observe(plan.widths, measured["median_ms"], unpruned_ms)
        effective = target_ms * table.network_ms / unpruned_ms  # the target in the table's machine state
    raise CheckFailedError(f"latency target {target_ms:.3f} ms missed after {max_rounds} measured rounds: "
                           + ", ".join(f"{r['measured_ms']:.3f} ms (predicted {r['predicted_ms']:.3f})" for r in rounds))


def _widths_of(result: PruneResult, planner: Planner) -> dict[str, int]:
    kept = {group.name: len(group.kept) for group in result.plan.groups}
    return {name: kept.get(name, group.channels) for name, group in planner.groups.items()}


def _global_plan(model: nn.Module, images: Any, planner: Planner, target_ms: float, round_to: int,
                 scope: dict[str, Any]) -> tuple[WidthPlan, PruneResult]:
    """The criterion's own global budget (a MACs fraction, FOAD's one (t, s) for all groups),
    bisected to the weakest one whose widths the table predicts within ``target_ms``."""
    low, high, best = 0.0, 0.95, None
    for _ in range(BISECTION_STEPS):
        middle = (low + high) / 2
        try:
            result = prune(model, images, flops_target=middle, round_to=round_to, **scope)
        except BudgetError:  # beyond what the criterion's budget can reach
            high = middle
            continue
        widths = _widths_of(result, planner)
        predicted = planner.predict(widths)
        if predicted <= target_ms:
            high, best = middle, (WidthPlan(widths, predicted, 0), result)
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
