"""``foadx.prune``: analyse the network, score its channels once, cut a copy to the budget.

The three phases live in their own modules (``analysis``, ``scoring``, ``cut``); ``prune``
checks the request and runs them in order. Any ``nn.Module`` can be pruned: one foadx did not
build gets the input contract of its calibration images, and a rebuildable spec only if the
caller names one (``source=``), which writing an artifact needs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from foadx.errors import BadInputError
from foadx.pruning.analysis import analyse, prunable_groups, trace_groups
from foadx.pruning.batches import as_batches, first_batch
from foadx.pruning.cost import count_cost
from foadx.pruning.cut import PruneResult, check_budget, cut
from foadx.pruning.features import ProgressHook
from foadx.pruning.scoring import check_criterion, group_scores, score_channels
from foadx.pruning.select import Budget
from foadx.provenance import ModelSource, provenance_of

__all__ = ["PruneResult", "group_scores", "inspect_model", "prunable_groups", "prune", "refuse_pruned"]


def refuse_pruned(model: nn.Module) -> None:
    """Pruning is one-shot from the original network: a second pass would score already-cut
    maps and its plan could not be rebuilt from the source architecture.

    Raises:
        BadInputError: ``model`` carries a pruned plan.
    """
    provenance = provenance_of(model)
    if provenance is not None and provenance.plan.is_pruned:
        raise BadInputError(
            f"the model is already pruned ({len(provenance.plan.groups)} groups cut by "
            f"{provenance.plan.criterion}); prune the original {provenance.source.spec} once with the budget you want"
        )


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
    source: ModelSource | None = None,
) -> PruneResult:
    """Prunes a copy of ``model`` (any ``nn.Module``; the original is left untouched).

    ``criterion``: "foad" (Shi et al., JCRD 2024; docs/method.md), "l1" (filter L1 norm, Li et
    al. 2017), "hrank" (mean feature-map rank, Lin et al. 2020) or "random" (``CRITERIA``).
    Paper mode (no budget): FOAD greedy with ``t`` (default 2) and ``s`` (default 0.5) per group.
    ``ratio``/``ratios``: exactly k = max(1, C - floor(R*C)) kept per group. ``flops_target``/
    ``params_target``: one (t, s) for all groups reaching that fractional reduction. ``widths``:
    exact kept counts per group. Every kept count is then rounded up to a multiple of ``round_to``.
    ``images``: calibration images (N, C, H, W) or re-iterable batches, fed to the model as given.
    ``source``: for a module foadx did not build, how to rebuild it (needed to save an artifact).
    Returns ``.model`` (carrying its plan: ``foadx.provenance_of(model).plan``), ``.plan`` and
    ``.report`` (widths, costs before/after). All three errors below exit the CLI with code 3.

    Raises:
        BadInputError: unknown criterion, bad batch size, an already pruned model, no prunable group.
        BudgetError: a malformed or unreachable budget, or one that removes nothing.
        DataError: missing, malformed or non-finite images.
    """
    check_criterion(criterion, batch_size)
    refuse_pruned(model)
    budget = Budget(t, s, ratio, dict(ratios) if ratios is not None else None, flops_target, params_target, round_to,
                    dict(widths) if widths is not None else None)
    check_budget(budget, criterion)
    batches = as_batches(images, batch_size)
    analysis = analyse(model, first_batch(batches), include_coupled=include_coupled, exclude=exclude, device=device,
                       source=source)
    check_budget(budget, criterion, analysis)
    scores = score_channels(analysis, batches, criterion, batch_size=batch_size, seed=seed, progress=progress)
    return cut(analysis, scores, budget, recalibrate_bn=recalibrate_bn, images=batches, calibration=calibration,
               progress=progress, last=True)


def inspect_model(model: nn.Module, example: Tensor) -> dict[str, Any]:
    """Groups, widths and costs of a model, as ``foadx inspect`` prints them; ``example`` is an
    input batch (N, C, H, W)."""
    model = model.eval()
    output_layers, _, groups = trace_groups(model, example)
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
