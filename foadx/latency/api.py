"""``profile`` (a latency table for a model on a backend) and ``prune_to_latency`` (FOAD to a
measured latency target): the library side of ``foadx profile`` and ``foadx prune
--latency-target``. The method, with its equations, is docs/latency.md."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from foadx.errors import BadInputError, BudgetError
from foadx.latency.measure import (
    measure_network,
    measure_networks,
    measure_units,
)
from foadx.latency.network import in_network_savings
from foadx.latency.plan import (
    Planner,
    WidthPlan,
    candidate_widths,
    legal_widths,
    plan_jointly,
    uniform_widths,
    unit_keys_to_profile,
)
from foadx.latency.rounds import Aim, Progress, Setting, measured_rounds
from foadx.latency.table import MODES, LatencyTable, check_compatible, environment_key
from foadx.latency.targets import (
    DEFAULT_PRECISION,
    BackendTarget,
    LatencyTarget,
    format_ms,
    parse_targets,
)
from foadx.latency.units import find_units
from foadx.latency.values import distortion_values
from foadx.provenance import require_provenance
from foadx.pruning.analysis import Analysis, analyse
from foadx.pruning.api import refuse_pruned
from foadx.pruning.batches import as_batches
from foadx.pruning.cut import PruneResult, choose, cut
from foadx.pruning.scoring import ChannelScores, check_criterion, score_channels
from foadx.pruning.select import Budget
from foadx.runtime.environment import describe_environment
from foadx.runtime.registry import check_profiling_backend, width_step

DEFAULT_ROUNDS = 3
ALLOCATIONS = ("knapsack", "global")
BISECTION_STEPS = 7  # on the MACs fraction: 0.9 / 2^7, under 1% of the MACs
CHECK_FRACTIONS = (0.75, 0.5, 0.25)  # uniform widths of the whole networks a table is checked on
PROFILING_MODES = ("auto", *MODES)
DEFAULT_MODE = "auto"


def profiling_mode(mode: str, batch: int) -> str:
    """The table mode ``mode`` stands for at ``batch``: "auto" is "unit" at batch 1 and "network"
    above it (docs/latency.md, section 9: at batch 1 unit tables predicted MobileFaceNet within 3%;
    at batch 8 units timed alone were biased, 19-28% off in four of five runs, where in-network
    tables were 5-14% off).

    Raises:
        BadInputError: a mode other than auto, unit or network (CLI exit code 3).
    """
    if mode not in PROFILING_MODES:
        raise BadInputError(f"a profiling mode is one of {', '.join(PROFILING_MODES)}, got {mode!r}")
    if mode != "auto":
        return mode
    return "unit" if batch == 1 else "network"


def _model_id(model: nn.Module) -> str:
    plan = require_provenance(model, "latency profiling").plan
    return f"{plan.model.spec}@{plan.digest()[:16]}"


def _setting(model: nn.Module, batch: int, include_coupled: bool, exclude: Iterable[str], device: Any = "cpu"):
    """The model's source, its one analysis (on ``device``) and its latency units."""
    source = require_provenance(model, "latency profiling").source
    example = torch.zeros(2, *source.input_chw)
    analysis = analyse(model, example, include_coupled=include_coupled, exclude=exclude, device=device)
    return source, analysis, find_units(model.eval(), example[:1], analysis.chosen, batch)


def _empty_table(model: nn.Module, backend: str, batch: int, round_to: int, network_ms: float,
                 precision: str = DEFAULT_PRECISION) -> LatencyTable:
    size = require_provenance(model, "latency profiling").source.input_size
    return LatencyTable(_model_id(model), tuple(size), batch, backend, precision, round_to,
                        environment_key(describe_environment()), network_ms)


def profile(model: nn.Module, backend: str = "ort-cpu", *, batch: int = 1, round_to: int | None = None,
            include_coupled: bool = False, exclude: Iterable[str] = (), mode: str = DEFAULT_MODE,
            progress: Callable[[int, int], None] | None = None) -> LatencyTable:
    """Measures the latency table of ``model`` on ``backend`` (docs/latency.md sections 1-2).

    ``mode`` "unit": every unit (conv + BN + activation) timed alone at full width and at every
    legal width of the groups that set it. ``mode`` "network": each group timed inside the whole
    network at a few legal widths, one group narrowed and the rest whole, each beside the
    unpruned network (one pair per group and width). ``mode`` "auto" (the default): unit at
    batch 1, network above (``profiling_mode``). Either way the whole network is timed, and
    whole networks at uniform 75%, 50% and 25% widths give the savings curve's check points.

    Args:
        model: a module foadx built or loaded (its provenance gives the input (C, H, W)).
        batch: the batch size timed.
        round_to: the width step of the legal widths; None takes the backend's ``width_step``.
        include_coupled: also profile residual-coupled groups (as in ``foadx.prune``).
        exclude: names of groups to leave whole (as in ``foadx.prune``).
        progress: called with (units or pairs done, in all).

    Returns:
        The table, recording its mode.

    Raises:
        BadInputError: a backend that cannot be latency-profiled, ``batch`` or ``round_to`` < 1,
            an unknown mode, or a module without foadx provenance (CLI exit code 3).
        MissingDependencyError: the backend's runtime or GPU is absent (exit code 6).
    """
    check_profiling_backend(backend)
    if batch < 1:
        raise BadInputError(f"batch must be >= 1, got {batch}")
    mode = profiling_mode(mode, batch)
    round_to = width_step(backend) if round_to is None else round_to
    if round_to < 1:
        raise BadInputError(f"round_to must be >= 1, got {round_to}")
    source, analysis, units = _setting(model, batch, include_coupled, exclude)
    if mode == "unit":
        measured = measure_units(unit_keys_to_profile(units, analysis.chosen, round_to), backend, progress=progress)
    else:
        savings = in_network_savings(model, analysis, backend, batch, round_to, progress)
    table = _empty_table(model, backend, batch, round_to, measure_network(model, backend, source.input_chw, batch)["median_ms"])
    table.mode = mode
    if mode == "unit":
        for key, ms in measured.items():
            table.add(key, ms)
    else:
        table.network_savings = savings
    _check_whole_networks(table, model, analysis, units, backend, batch)
    return table


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
        table: LatencyTable | Mapping[str, LatencyTable] | None = None, allow_foreign_lut: bool = False,
        criterion: str = "foad", batch: int = 1, round_to: int | None = None, include_coupled: bool = False,
        exclude: Iterable[str] = (), recalibrate_bn: bool = False, batch_size: int = 32, seed: int = 0,
        device: Any = None, max_rounds: int = DEFAULT_ROUNDS, min_keep: float = 0.0, allocation: str = "knapsack",
        calibration: dict[str, Any] | None = None, progress: Progress | None = None) -> PruneResult:
    """Prunes ``model`` to run within ``target`` on ``backend`` (or within several targets on
    several backends at once), measured: plan widths on the tables, cut, measure beside the
    unpruned network in ``FINAL_PAIRS`` interleaved pairs per target, refit the savings curves,
    plan again (at most ``max_rounds`` rounds). ``allocation``: ``knapsack`` sets each group's
    width (docs/latency.md section 4); ``global`` bisects the criterion's one budget for all
    groups (FOAD's one (t, s)).

    Args:
        model: an unpruned module foadx built or loaded.
        images: calibration batches (N, C, H, W), normalised as the model expects.
        target: a ``LatencyTarget`` or its text: ``2.0ms``, ``2.5x`` (on ``backend``), or
            ``BACKEND[@PRECISION]=T`` pairs (``ort-cpu=1.5x openvino=1.4x``). A target is
            accepted when the upper end of its pairs' min-max interval is within 5% of it,
            borderline when only their median is.
        table: a profiled table (one target), or backend name -> table; a target without one is
            profiled first. ``allow_foreign_lut`` accepts tables measured in another environment.
        round_to: the width step; None takes the tables' (profiled with the backend's).
        min_keep: the fraction of each group's channels always kept, in [0, 1].
        progress: ``(stage, done, total)``, called after every measured pair.

    Returns:
        The ``PruneResult``; its plan's ``parameters["latency"]`` and its report record each
        target, its table's digest, the pairs' median and interval, the verdict and every round.

    Raises:
        BadInputError: an unknown allocation or criterion, ``min_keep`` outside [0, 1], a pruned
            model, a backend that cannot be profiled, a malformed target, or a table made for
            another model, size, batch, backend, precision or environment (CLI exit code 3).
        BudgetError: the unpruned model already meets a target, the table's fastest plan cannot
            (refused before any channel is scored), or a global budget cannot reach it (exit 3).
        LatencyTargetMissed: a target is missed in all ``max_rounds`` measured rounds (a
            CheckFailedError, exit code 4), carrying the best plan found marked missed.
        MissingDependencyError: a backend's runtime or GPU is absent (exit code 6).
    """
    targets = ([BackendTarget(backend, DEFAULT_PRECISION, target)] if isinstance(target, LatencyTarget)
               else parse_targets(target, backend))
    _check_request(model, allocation, min_keep, criterion, batch_size, targets)
    images = as_batches(images, batch_size)
    tables = _tables_for(model, targets, table, batch, round_to, include_coupled, exclude, progress)
    source, analysis, units = _setting(model, batch, include_coupled, exclude, device)
    step = tables[0].round_to
    candidates = {group.name: candidate_widths(group, step, min_keep) for group in analysis.chosen}
    aims = [_aim(model, target, table, units, analysis, candidates, batch, allow_foreign_lut, min_keep)
            for target, table in zip(targets, tables)]
    scores = score_channels(analysis, images, criterion, batch_size=batch_size, seed=seed)  # the one scoring pass
    values = _values(model, images, analysis, scores, step, device) if allocation == "knapsack" else {}
    planners = [aim.planner for aim in aims]
    for planner in planners:
        planner.values = values

    def prune_within(budgets_ms: list[float]) -> tuple[WidthPlan, PruneResult]:
        if allocation == "knapsack":
            plan = plan_jointly(planners, budgets_ms, candidates)
            budget = Budget(widths=plan.widths)
        else:
            plan, flops_target = _global_plan(analysis, scores, planners, budgets_ms, step)
            budget = Budget(flops_target=flops_target, round_to=step)
        return plan, cut(analysis, scores, budget, recalibrate_bn=recalibrate_bn, images=images, calibration=calibration)

    return measured_rounds(model, prune_within, aims, Setting(source.input_chw, batch, max_rounds, allocation, min_keep),
                           progress)


def _tables_for(model: nn.Module, targets: list[BackendTarget], given: Any, batch: int, round_to: int | None,
                include_coupled: bool, exclude: Iterable[str], progress: Progress | None) -> list[LatencyTable]:
    """Each target's table: the one given (a single table for a single target, or by backend
    name), else profiled now. All must share one width step.

    Raises:
        BadInputError: one table for several targets, a table named for no target, a precision
            foadx does not profile, or tables with different width steps.
    """
    if isinstance(given, LatencyTable):
        if len(targets) > 1:
            raise BadInputError("several latency targets need a table per backend (--lut BACKEND=FILE)")
        given = {targets[0].name: given}
    given = dict(given or {})
    unknown = set(given) - {target.name for target in targets}
    if unknown:
        raise BadInputError(f"a latency table is given for {', '.join(sorted(unknown))}, which no target names")
    tables = []
    for target in targets:
        if target.name not in given and target.precision != DEFAULT_PRECISION:
            raise BadInputError(f"foadx profile measures {DEFAULT_PRECISION} tables; give a table for {target.name}")
        stage = f"profiling {target.name}"
        hook = (lambda done, total, stage=stage: progress(stage, done, total)) if progress else None
        tables.append(given.get(target.name) or profile(model, target.backend, batch=batch, round_to=round_to,
                                                        include_coupled=include_coupled, exclude=exclude, progress=hook))
    steps = {table.round_to for table in tables}
    if len(steps) > 1 or (round_to is not None and steps != {round_to}):
        raise BadInputError(f"the latency tables' width steps ({', '.join(map(str, sorted(steps)))}) must be one "
                            f"{'and equal --round-to ' + str(round_to) if round_to is not None else 'step'}")
    return tables


def _aim(model: nn.Module, target: BackendTarget, table: LatencyTable, units: list, analysis: Analysis,
         candidates: Mapping[str, list[int]], batch: int, allow_foreign: bool, min_keep: float) -> Aim:
    """A target's planner on its checked table, refused at once (before any scoring) when the
    unpruned model already meets it or the table's fastest plan cannot.

    Raises:
        BadInputError: a table made for another model, size, batch, backend, precision or
            environment; BudgetError: nothing to prune, or out of reach.
    """
    here = _empty_table(model, target.backend, batch, table.round_to, table.network_ms, target.precision)
    check_compatible(table, here, allow_foreign)
    measure = (lambda keys: measure_units(keys, target.backend)) if table.environment == here.environment else None
    planner = Planner(table, units, analysis.chosen, {}, measure)
    target_ms = target.target.milliseconds(table.network_ms)
    where = f"on {target.name} (batch {batch})"
    if target_ms >= table.network_ms:
        raise BudgetError(f"the unpruned model already runs in {format_ms(table.network_ms)} ms {where}, "
                          f"within the {format_ms(target_ms)} ms target: nothing to prune")
    fastest = planner.fastest(candidates)
    if fastest > target_ms:
        floor = f" of at least {min_keep:g} of each group (--min-keep)" if min_keep > 0 else ""
        raise BudgetError(f"the latency target {target.target} {where} is out of reach: the table's fastest plan is "
                          f"{format_ms(fastest)} ms ({table.network_ms / fastest:.2f}x), every group at its narrowest legal "
                          f"width{floor}, against the {format_ms(target_ms)} ms asked")
    return Aim(target, planner, target_ms, target_ms, [])


def _check_request(model: nn.Module, allocation: str, min_keep: float, criterion: str, batch_size: int,
                   targets: list[BackendTarget]) -> None:
    """Refuses, before any work, a latency prune that cannot run (BadInputError, or the
    backend's missing dependency)."""
    if allocation not in ALLOCATIONS:
        raise BadInputError(f"allocation must be one of {', '.join(ALLOCATIONS)}, got {allocation!r}")
    if not 0.0 <= min_keep <= 1.0:
        raise BadInputError(f"min_keep must be a fraction in [0, 1], got {min_keep}")
    check_criterion(criterion, batch_size)
    refuse_pruned(model)
    for target in targets:
        check_profiling_backend(target.backend)


def _widths_of(kept: dict[str, list[int]], planner: Planner) -> dict[str, int]:
    return {name: len(kept[name]) if name in kept else group.channels for name, group in planner.groups.items()}


def _global_plan(analysis: Analysis, scores: ChannelScores, planners: Sequence[Planner], targets_ms: Sequence[float],
                 round_to: int) -> tuple[WidthPlan, float]:
    """The criterion's own global budget (a MACs fraction, FOAD's one (t, s) for all groups),
    bisected to the weakest one whose widths every table predicts within its target: each
    step chooses channels from the one scoring, nothing is cut. Returns the plan and the fraction."""
    low, high, best = 0.0, 0.95, None
    for _ in range(BISECTION_STEPS):
        middle = (low + high) / 2
        try:
            selection = choose(analysis, scores, Budget(flops_target=middle, round_to=round_to))
        except BudgetError:  # beyond what the criterion's budget can reach
            high = middle
            continue
        widths = _widths_of(selection.kept, planners[0])
        predicted = tuple(planner.predict(widths) for planner in planners)
        if all(ms <= target for ms, target in zip(predicted, targets_ms)):
            high, best = middle, (WidthPlan(widths, predicted[0], 0, predicted), middle)
        else:
            low = middle
    if best is None:
        raise BudgetError(f"the latency target {', '.join(format_ms(t) for t in targets_ms)} ms is out of reach of a global budget: "
                          f"at {high:.0%} fewer MACs the table still predicts more")
    return best
