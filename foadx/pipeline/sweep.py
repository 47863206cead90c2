"""``foadx sweep``: every criterion at every budget, optionally fine-tuned on the same short
schedule, its held-out accuracy and its latency measured on a backend: the trade-off a user
looks at before choosing a budget.

Each point is written into ``OUT/points/CRITERION-BUDGET/`` (``point.json`` beside the artifact)
as one atomic step, so a killed sweep keeps every finished point and a re-run measures only the
missing ones. A budget a criterion cannot reach is kept as an unreachable point with the reason.
Latency is measured last, each point interleaved with the unpruned network in its own pair (on
2 CPU cores, many onnxruntime sessions interleaved at once time bimodally; pairs do not), and
reported as the pair's ratio times the unpruned network's reference latency.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from torch import nn

from foadx._version import __version__
from foadx.atomic import atomic_directory, write_json, write_text
from foadx.errors import BadInputError, BudgetError
from foadx.report.kinds import envelope
from foadx.resolve import ModelRef, resolve_model

BUDGET_KINDS = ("flops_target", "params_target", "ratio")
POINT_FILE = "point.json"


@dataclass(frozen=True)
class SweepSettings:
    budget_kind: str  # flops_target, params_target or ratio
    budgets: tuple[float, ...]
    criteria: tuple[str, ...]
    data: str
    finetune_epochs: int = 0
    finetune_lr: float = 0.02
    backend: str = "ort-cpu"
    batch: int = 1
    images: int = 128
    round_to: int = 1
    flip: bool = True  # random horizontal flips while fine-tuning (off for digits)
    seed: int = 0

    def check(self) -> None:
        if self.budget_kind not in BUDGET_KINDS:
            raise BadInputError(f"sweep budgets are one of {', '.join(BUDGET_KINDS)}, not {self.budget_kind}")
        if not self.budgets or not all(0 < b < 1 for b in self.budgets):
            raise BadInputError(f"sweep budgets must be fractions in (0, 1), got {list(self.budgets)}")
        if not self.criteria:
            raise BadInputError("give at least one criterion")
        if self.finetune_epochs < 0 or self.batch < 1:
            raise BadInputError("finetune epochs must be >= 0 and the batch >= 1")


def _point_key(ref: ModelRef, settings: SweepSettings, criterion: str, budget: float) -> str:
    content = {"model": ref.describe(), "criterion": criterion, "budget": budget, "foadx": __version__,
               **{k: v for k, v in asdict(settings).items() if k not in ("budgets", "criteria", "backend", "batch")}}
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def _accuracy(model: nn.Module, data: str) -> float:
    from foadx.evaluate.runner import evaluate_model

    return next(iter(evaluate_model(model, data).summary().values()))


def _make_point(base: nn.Module, images: Any, settings: SweepSettings, criterion: str, budget: float,
                folder: Path) -> dict[str, Any]:
    from foadx.tasks.prune import Calibration, ChannelBudget, PruneRequest, PruneScope, prune_model

    request = PruneRequest(ChannelBudget(round_to=settings.round_to, **{settings.budget_kind: budget}), criterion,
                           PruneScope(recalibrate_bn=True),
                           Calibration(settings.data, settings.images, seed=settings.seed))
    try:
        result = prune_model(base, request, images=images)
    except BudgetError as error:
        return {"reachable": False, "reason": str(error).splitlines()[0]}
    result.save(folder / "model")
    model = _finetuned(result.model, settings, folder / "tuned") if settings.finetune_epochs else result.model
    return {"reachable": True, "accuracy": _accuracy(model, settings.data), "macs": result.report["macs"]["after"],
            "params": result.report["params"]["after"], "model": "tuned" if settings.finetune_epochs else "model"}


def _finetuned(model: nn.Module, settings: SweepSettings, out: Path) -> nn.Module:
    from foadx.tasks.finetune import TrainingData, prepare_finetune
    from foadx.train import FinetuneConfig

    config = FinetuneConfig(epochs=settings.finetune_epochs, lr=settings.finetune_lr, flip=settings.flip,
                            seed=settings.seed)
    prepare_finetune(model, TrainingData(settings.data), out, config, origin="").run()
    return resolve_model(str(out)).module()


def run_sweep(ref: ModelRef, settings: SweepSettings, out: str | Path,
              progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Runs the sweep into ``out`` (resuming a killed one) and writes sweep.json, sweep.md,
    the figures and report.html."""
    from foadx.data.calibration import images_for

    settings.check()
    out = Path(out)
    base = ref.module().eval()
    images = images_for(ref.source, settings.data, settings.images, seed=settings.seed)
    points = []
    for criterion in settings.criteria:
        for budget in settings.budgets:
            folder = out / "points" / f"{criterion}-{budget:g}"
            key = _point_key(ref, settings, criterion, budget)
            done = _read_point(folder)
            if done is None or done.get("key") != key:
                with atomic_directory(folder) as staging:
                    point = {"criterion": criterion, "budget": budget, "key": key,
                             **_make_point(base, images, settings, criterion, budget, staging)}
                    write_json(staging / POINT_FILE, point)
                done = point
                if progress:
                    progress(f"{criterion} {budget:g}: {'done' if done['reachable'] else 'unreachable'}")
            points.append({**done, "folder": str(folder)})
    report = _with_latency(ref, base, settings, points)
    _write_outputs(report, out)
    return report


def _read_point(folder: Path) -> dict[str, Any] | None:
    try:
        point = json.loads((folder / POINT_FILE).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return point if isinstance(point, dict) else None


def _with_latency(ref: ModelRef, base: nn.Module, settings: SweepSettings, points: list[dict[str, Any]]) -> dict[str, Any]:
    import torch

    from foadx.latency.measure import measure_network, measure_networks
    from foadx.pruning.cost import count_cost

    chw = ref.input_chw
    reference = measure_network(base, settings.backend, chw, settings.batch)["median_ms"]
    for point in points:
        if point["reachable"]:
            model = resolve_model(str(Path(point["folder"]) / point["model"])).module().eval()
            pair = measure_networks({"unpruned": base, "pruned": model}, settings.backend, chw, settings.batch)
            point["speedup"] = pair["unpruned"]["median_ms"] / pair["pruned"]["median_ms"]
            point["latency_ms"] = reference / point["speedup"]
    base_cost = count_cost(base, torch.zeros(1, *chw))
    return envelope("foadx.sweep", {"model": ref.text,
            "backend": settings.backend, "batch": settings.batch, "budget": settings.budget_kind,
            "finetune_epochs": settings.finetune_epochs,
            "unpruned": {"accuracy": _accuracy(base, settings.data), "latency_ms": reference, "macs": base_cost.macs,
                         "params": base_cost.params},
            "points": [{k: v for k, v in p.items() if k != "key"} for p in points]})


def _write_outputs(report: dict[str, Any], out: Path) -> None:
    from foadx.report.html import render_html, report_figures
    from foadx.report.markdown import render_markdown

    write_json(out / "sweep.json", report)
    write_text(out / "sweep.md", render_markdown(report))
    report_figures(report, out / "figures")
    write_text(out / "report.html", render_html(report))
