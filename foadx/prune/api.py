"""``foadx.prune``: score channels on calibration images, choose kept indices, cut the network."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from foadx._version import __version__
from foadx.device import resolve_device
from foadx.errors import BadInputError, BudgetError, DataError
from foadx.foad import SimilarityAccumulator
from foadx.models.registry import model_source
from foadx.prune.apply import apply_kept
from foadx.prune.batchnorm import recalibrate_batchnorm
from foadx.prune.cost import CostModel, ModelCost, count_cost
from foadx.prune.criteria import BASELINE_CRITERIA, RankAccumulator, l1_scores, random_scores
from foadx.prune.features import FeatureTaps, group_maps
from foadx.prune.groups import ChannelGroup, build_dependency_graph, discover_groups, find_output_layers
from foadx.prune.select import Budget, Selection, select_by_scores, select_foad

CRITERIA = ("foad", *BASELINE_CRITERIA)
PLAN_SCHEMA_VERSION = 1
ProgressHook = Callable[[int, int | None], None]


@dataclass
class PruneResult:
    model: nn.Module
    plan: dict[str, Any]
    report: dict[str, Any]
    groups: list[ChannelGroup] = field(repr=False, default_factory=list)

    def save(self, directory: str) -> None:
        from foadx.prune.artifact import save_pruned

        save_pruned(self, directory)


def as_batches(images: Tensor | Iterable[Tensor], batch_size: int) -> Iterable[Tensor]:
    """A re-iterable of image batches from a tensor (N, C, H, W) or any re-iterable of batches."""
    if isinstance(images, Tensor):
        if images.dim() != 4 or images.shape[0] == 0:
            raise DataError(f"calibration images must be (N, C, H, W) with N > 0, got {tuple(images.shape)}")
        return [images[start : start + batch_size] for start in range(0, images.shape[0], batch_size)]
    return images


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


def _collect(
    model: nn.Module,
    groups: list[ChannelGroup],
    batches: Iterable[Tensor],
    device: torch.device,
    make: Callable[[int], Any],
    progress: ProgressHook | None,
) -> dict[str, Any]:
    """One forward pass of the unpruned network; every group's accumulator sees every batch."""
    accumulators = {group.name: make(group.channels) for group in groups}
    taps = FeatureTaps(model, [p for group in groups for p in group.producers])
    total = len(batches) if hasattr(batches, "__len__") else None
    seen = 0
    with taps.attached():
        for index, batch in enumerate(batches):
            captured = taps.run(batch.to(device))
            for group in groups:
                accumulators[group.name].add(group_maps(captured, group))
            seen += batch.shape[0]
            if progress:
                progress(index + 1, total)
    if seen == 0:
        raise DataError("no calibration images were given")
    return accumulators


def _reduction(cost_model: CostModel) -> Callable[[str, Mapping[str, list[int]]], float]:
    full = cost_model.full

    def reduction_of(metric: str, kept: Mapping[str, list[int]]) -> float:
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
    count is then rounded up to a multiple of ``round_to``. Returns ``.model``, ``.plan`` (what
    ``load_pruned`` rebuilds from) and ``.report`` (widths and costs before/after).
    """
    if criterion not in CRITERIA:
        raise BadInputError(f"unknown criterion {criterion!r}: use one of {', '.join(CRITERIA)}")
    if batch_size < 1:
        raise BadInputError(f"batch size must be >= 1, got {batch_size}")
    budget = Budget(t, s, ratio, dict(ratios) if ratios is not None else None,
                    flops_target, params_target, round_to)
    budget.validate(criterion)
    if criterion != "foad" and (t is not None or s is not None):
        raise BudgetError(f"--t/--s belong to FOAD, not to criterion {criterion}")
    target_device = resolve_device(device)
    batches = as_batches(images, batch_size)
    first = next(iter(batches), None)
    if first is None or first.shape[0] == 0:
        raise DataError("no calibration images were given")

    pruned = copy.deepcopy(model).to(target_device).eval()
    example = first[:2].to(target_device)
    output_layers = find_output_layers(pruned, example)
    dependency_graph = build_dependency_graph(pruned, example)
    all_groups = discover_groups(pruned, dependency_graph, output_layers)
    chosen = select_groups(all_groups, include_coupled, exclude)
    if not chosen:
        raise BadInputError("the model has no prunable channel groups in the chosen scope")
    if budget.ratios is not None:
        unknown = set(budget.ratios) - {group.name for group in chosen}
        if unknown:
            raise BudgetError(f"--ratios names groups not prunable here: {', '.join(sorted(unknown))}")
    cost_model = CostModel(pruned, chosen, example)
    reduction_of = _reduction(cost_model)

    selection: Selection
    if criterion == "foad":
        accumulators = _collect(pruned, chosen, batches, target_device, SimilarityAccumulator, progress)
        similarities = {name: acc.similarity() for name, acc in accumulators.items()}
        images_seen = next(iter(accumulators.values())).images
        selection = select_foad(similarities, budget, reduction_of)
    else:
        if criterion == "hrank":
            accumulators = _collect(pruned, chosen, batches, target_device, RankAccumulator, progress)
            scores = {name: acc.scores() for name, acc in accumulators.items()}
            images_seen = next(iter(accumulators.values())).images
        elif criterion == "l1":
            scores = {group.name: l1_scores(pruned, group) for group in chosen}
            images_seen = 0
        else:
            scores = {group.name: random_scores(group, seed) for group in chosen}
            images_seen = 0
        selection = select_by_scores(scores, budget, reduction_of)

    before = count_cost(pruned, example)
    bytes_before = _state_bytes(pruned)
    apply_kept(pruned, dependency_graph, chosen, selection.kept)
    recalibrated = 0
    if recalibrate_bn:
        recalibrated = recalibrate_batchnorm(pruned, (b for b in batches if b.shape[0] > 1), target_device)
    after = count_cost(pruned, example)

    source = model_source(model)
    plan = {
        "schema_version": PLAN_SCHEMA_VERSION,
        "foadx_version": __version__,
        "model": source.to_json() if source else None,
        "criterion": criterion,
        "parameters": {
            "t": selection.t,
            "s": selection.s,
            "ratio": ratio,
            "ratios": dict(ratios) if ratios is not None else None,
            "flops_target": flops_target,
            "params_target": params_target,
            "round_to": round_to,
            "include_coupled": include_coupled,
            "exclude": sorted(set(exclude)),
            "recalibrate_bn": recalibrate_bn,
            "seed": seed,
        },
        "calibration": {**(calibration or {}), "images": images_seen or None, "batch_size": batch_size},
        "output_layers": output_layers,
        "groups": [
            {
                "name": group.name,
                "channels": group.channels,
                "kept": selection.kept[group.name],
                "coupled": group.coupled,
            }
            for group in chosen
        ],
    }
    report = _report(plan, all_groups, before, after, bytes_before, _state_bytes(pruned), recalibrated)
    return PruneResult(pruned, plan, report, all_groups)


def _reduction_fraction(before: int, after: int) -> float:
    return 0.0 if before == 0 else 1.0 - after / before


def _report(
    plan: dict[str, Any],
    all_groups: list[ChannelGroup],
    before: ModelCost,
    after: ModelCost,
    bytes_before: int,
    bytes_after: int,
    recalibrated: int,
) -> dict[str, Any]:
    pruned_widths = {g["name"]: len(g["kept"]) for g in plan["groups"]}
    return {
        "criterion": plan["criterion"],
        "t": plan["parameters"]["t"],
        "s": plan["parameters"]["s"],
        "round_to": plan["parameters"]["round_to"],
        "calibration_images": plan["calibration"]["images"],
        "bn_recalibration_images": recalibrated,
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
    """Groups, widths and costs of an unpruned model, as ``foadx inspect`` prints them."""
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


