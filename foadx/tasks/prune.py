"""The prune task: a model, calibration images and a budget -> a pruned model with its plan.

A budget is either a ``ChannelBudget`` (the pruner's own ``foadx.pruning.select.Budget``:
FOAD's paper mode, a ratio per group, or a MACs/params reduction, widths rounded to ``round_to``,
default 1; ``foadx.prune``) or a ``LatencyBudget`` (a measured latency on a backend, widths in
steps of the backend's width step unless ``round_to`` says otherwise;
``foadx.latency.prune_to_latency``). This module is the one place that tells them apart.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Union

from torch import nn

from foadx.errors import BadInputError
from foadx.pruning.select import Budget as ChannelBudget
from foadx.tasks.checks import at_least, finite


@dataclass(frozen=True)
class LatencyBudget:
    """A measured latency: ``target`` is milliseconds (``"2.0ms"``) or a speedup over the
    unpruned model (``"1.5x"``) on ``backend`` at ``batch``, or several ``BACKEND[@PRECISION]=T``
    pairs met at once (``"ort-cpu=1.5x openvino=1.4x"``); ``table`` a latency table from
    ``foadx profile`` for the one target, or target name -> table file (None, or a target not
    named: profile now). docs/latency.md has the method."""

    target: str
    backend: str = "ort-cpu"
    table: Path | Mapping[str, Path] | None = None
    allow_foreign_table: bool = False
    batch: int = 1
    min_keep: float = 0.0
    allocation: str = "knapsack"
    round_to: int | None = None  # None: the backend's width step (foadx.runtime.width_step)

    def check(self) -> None:
        """Refuses, before any work, a malformed target (exit 3) and a backend that cannot be
        profiled here (exit 6)."""
        from foadx.latency.targets import parse_targets
        from foadx.runtime import check_profiling_backend

        finite("min_keep", self.min_keep)
        at_least("batch", self.batch, 1)
        at_least("round_to", self.round_to, 1)
        for target in parse_targets(self.target, self.backend):
            check_profiling_backend(target.backend)


Budget = Union[ChannelBudget, LatencyBudget]


@dataclass(frozen=True)
class PruneScope:
    """Which groups are cut and how: residual-coupled groups too, groups left whole, BN
    statistics re-estimated after the cut."""

    include_coupled: bool = False
    exclude: tuple[str, ...] = ()
    recalibrate_bn: bool = False


@dataclass(frozen=True)
class Calibration:
    """The images a criterion scores: ``count`` seeded images of ``data`` in batches."""

    data: str
    count: int = 128
    batch_size: int = 32
    seed: int = 0
    device: str = "auto"

    def check(self) -> None:
        """Raises ``BadInputError`` for a count or batch size below 1."""
        at_least("images", self.count, 1)
        at_least("batch_size", self.batch_size, 1)


@dataclass(frozen=True)
class PruneRequest:
    """Everything one prune needs besides the model."""

    budget: Budget = field(default_factory=ChannelBudget)
    criterion: str = "foad"
    scope: PruneScope = field(default_factory=PruneScope)
    calibration: Calibration = field(default_factory=lambda: Calibration("demo"))

    def check(self) -> None:
        """Every refusal that needs no model and no images (exit 3, or 6 for a backend)."""
        if isinstance(self.budget, LatencyBudget):
            self.budget.check()
        else:
            self.budget.validate(self.criterion)
        self.calibration.check()

    @property
    def measures_latency(self) -> bool:
        return isinstance(self.budget, LatencyBudget)


def read_table(budget: Budget) -> Any:
    """The latency table a latency budget names, or target name -> table for several (None:
    none named, or a channel budget).

    Raises:
        ArtifactError: a table file is malformed; BadInputError: unreadable.
    """
    if not isinstance(budget, LatencyBudget) or budget.table is None:
        return None
    from foadx.latency import load_table

    if isinstance(budget.table, Mapping):
        return {name: load_table(path) for name, path in budget.table.items()}
    return load_table(budget.table)


def prune_model(model: nn.Module, request: PruneRequest, *, table: Any = None, images: Any = None,
                progress: Callable[..., None] | None = None) -> Any:
    """Prunes a copy of ``model`` (left untouched) as ``request`` says.

    Args:
        model: an unpruned network that carries its input contract (built by foadx).
        request: budget, criterion, scope and calibration images.
        table: a loaded latency table for a latency budget (see ``read_table``); None profiles.
        images: calibration batches already read for this model (None: read ``request.calibration``).
        progress: ``(phase, done, total)``: a channel budget's phases, a latency budget's
            profiling and every measured pair.

    Returns:
        ``foadx.PruneResult``: ``.model`` (carrying its plan), ``.plan``, ``.report``.

    Raises:
        BadInputError, BudgetError, DataError: the request cannot be met (exit 3);
        CheckFailedError: a latency target missed after the measured rounds (exit 4).
    """
    from foadx.pruning.api import refuse_pruned
    from foadx.pruning.batchnorm import refuse_recalibration_without_batchnorm

    request.check()
    refuse_pruned(model)
    if request.scope.recalibrate_bn:
        refuse_recalibration_without_batchnorm(model)
    images = calibration_batches(model, request.calibration) if images is None else images
    arguments = _common_arguments(request, images)
    if isinstance(request.budget, LatencyBudget):
        return _prune_to_latency(model, images, request.budget, table, {**arguments, "progress": progress})
    import foadx

    budget = {field.name: getattr(request.budget, field.name) for field in fields(request.budget)}
    return foadx.prune(model, images, **budget, progress=progress, **arguments)


def calibration_batches(model: nn.Module, calibration: Calibration) -> Any:
    """The images ``calibration`` names, prepared for ``model``'s input contract (its input
    size, mean and std): re-iterable float batches (n, C, H, W).

    Raises:
        BadInputError: the model carries no input contract; DataError: unreadable data.
    """
    from foadx.data.calibration import images_for
    from foadx.provenance import require_provenance

    source = require_provenance(model, "pruning from a data source").source
    return images_for(source, calibration.data, calibration.count, batch_size=calibration.batch_size,
                      seed=calibration.seed)


def _common_arguments(request: PruneRequest, images: Any) -> dict[str, Any]:
    scope, calibration = request.scope, request.calibration
    record = {**images.describe(), "data": calibration.data, "seed": calibration.seed} if hasattr(images, "describe") else {}
    return {"criterion": request.criterion, "include_coupled": scope.include_coupled, "exclude": scope.exclude,
            "recalibrate_bn": scope.recalibrate_bn, "batch_size": calibration.batch_size, "seed": calibration.seed,
            "device": calibration.device, "calibration": record}


def _prune_to_latency(model: nn.Module, images: Any, budget: LatencyBudget, table: Any,
                      arguments: dict[str, Any]) -> Any:
    from foadx.latency import prune_to_latency

    if table is None and budget.table is not None:
        table = read_table(budget)
    return prune_to_latency(model, images, budget.target, backend=budget.backend, table=table,
                            allow_foreign_lut=budget.allow_foreign_table, batch=budget.batch,
                            min_keep=budget.min_keep, allocation=budget.allocation, round_to=budget.round_to,
                            **arguments)


def refuse_mixed_budgets(given: Mapping[str, Any]) -> None:
    """A latency target is one budget; channel-budget settings beside it are a contradiction.

    Args:
        given: setting name -> value for every channel-budget setting the caller received.

    Raises:
        BadInputError: one or more of them is set.
    """
    others = [name for name, value in given.items() if value is not None]
    if others:
        raise BadInputError(f"give one budget: a latency target or {', '.join(others)}")
