"""``foadx sweep``: every criterion at every budget, optionally fine-tuned on the same short
schedule, its held-out accuracy and its latency measured on a backend: the trade-off a user
looks at before choosing a budget.

Each point is written into ``OUT/points/CRITERION-BUDGET/`` (BUDGET: the float's ``repr``, so two
budgets never share a folder; ``point.json`` beside the artifact) as one atomic step, so a killed
sweep keeps every finished point and a re-run measures only the missing ones. A ``point.json``
read back is data: one that does not check out (``check_point``) is made again, and said so. A budget a criterion cannot reach is kept as an unreachable point with the reason.
Latency is measured last, each point interleaved with the unpruned network in its own pair (on
2 CPU cores, many onnxruntime sessions interleaved at once time bimodally; pairs do not) by
``foadx.bench.run_bench``, and reported as the pair's speedup (the median of its per-round
ratios, with their interval and verdict: ``foadx.bench.speedup``) and as the unpruned network's
reference latency divided by that speedup (and by the interval's ends).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from torch import nn

from foadx._version import __version__
from foadx.atomic import atomic_directory, write_json, write_text
from foadx.errors import BadInputError, BudgetError
from foadx.report.kinds import envelope
from foadx.report.speedup import speedup_text
from foadx.resolve import ModelRef, resolve_model

BUDGET_KINDS = ("flops_target", "params_target", "ratio")
POINT_FILE = "point.json"
MAX_POINT_BYTES = 1024 * 1024
POINT_MODELS = ("model", "tuned")  # the folder of a point's model, beside point.json
MAX_EPOCHS, MAX_COUNT = 10_000, 1_000_000


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
    accuracy: str | None = None  # the accuracy axis: None the data's own metric, "tar@FAR" face TAR at that FAR

    def tar_far(self) -> float | None:
        """The FAR of a ``tar@FAR`` accuracy axis (TAR over every pair, ``--protocol all``);
        None for the data's own metric (top-1, or verification accuracy on listed pairs).

        Raises:
            BadInputError: an axis that is not ``tar@FAR`` with FAR a fraction in (0, 1).
        """
        if self.accuracy is None:
            return None
        name, _, value = self.accuracy.partition("@")
        try:
            far = float(value)
        except ValueError:
            far = math.nan
        if name != "tar" or not 0 < far < 1:
            raise BadInputError(f"accuracy must be tar@FAR with FAR a fraction in (0, 1), e.g. tar@1e-3; "
                                f"got {self.accuracy!r}"[:300], parameters=("accuracy",))
        return far

    def check(self) -> None:
        """Refuses, before any work, settings out of range (exit 3).

        Raises:
            BadInputError: an unknown budget kind or criterion, a budget outside (0, 1), a
                learning rate that is not a finite positive number, or a count out of range.
        """
        from foadx.pruning import CRITERIA

        if self.budget_kind not in BUDGET_KINDS:
            raise BadInputError(f"sweep budgets are one of {', '.join(BUDGET_KINDS)}, not {self.budget_kind}")
        if not self.budgets or not all(_number(b) and 0 < b < 1 for b in self.budgets):
            raise BadInputError(f"sweep budgets must be fractions in (0, 1), got {list(self.budgets)}")
        unknown = [c for c in self.criteria if c not in CRITERIA]
        if not self.criteria or unknown:
            raise BadInputError(f"criteria must be names of {', '.join(CRITERIA)}; got {unknown or 'none'}"[:300])
        counts = {"finetune_epochs": (self.finetune_epochs, 0, MAX_EPOCHS), "batch": (self.batch, 1, 65536),
                  "images": (self.images, 1, MAX_COUNT), "round_to": (self.round_to, 1, 4096)}
        for name, (value, low, high) in counts.items():
            if not (isinstance(value, int) and low <= value <= high):
                raise BadInputError(f"{name} must be a whole number in [{low}, {high:,}], got {value}",
                                    parameters=(name,))
        if not (_number(self.finetune_lr) and 0 < self.finetune_lr <= 10):
            raise BadInputError(f"finetune_lr must be a finite number in (0, 10], got {self.finetune_lr}",
                                parameters=("finetune_lr",))
        self.tar_far()


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def point_folder(out: Path, criterion: str, budget: float) -> Path:
    """``OUT/points/CRITERION-BUDGET``: BUDGET is the float's shortest exact ``repr`` (0.3 and
    0.3000001 get two folders)."""
    return out / "points" / f"{criterion}-{float(budget)!r}"


def _point_key(ref: ModelRef, settings: SweepSettings, criterion: str, budget: float) -> str:
    content = {"model": ref.describe(), "criterion": criterion, "budget": budget, "foadx": __version__,
               **{k: v for k, v in asdict(settings).items() if k not in ("budgets", "criteria", "backend", "batch")}}
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def _accuracy(model: nn.Module, settings: SweepSettings) -> float | None:
    """The model's accuracy on the sweep's axis: the data's own first metric, or the same-model
    TAR at ``tar_far()`` over every pair of the data's identities (None where not measurable)."""
    from foadx.evaluate.runner import evaluate_model

    far = settings.tar_far()
    if far is None:
        return next(iter(evaluate_model(model, settings.data).summary().values()))
    return evaluate_model(model, settings.data, far_target=far, protocol="all").summary()["tar"]


def unpruned_accuracy(ref: ModelRef, base: nn.Module, settings: SweepSettings) -> float | None:
    """The unpruned model's accuracy, measured before any point: data the axis cannot use fails
    here, before any work is written.

    Raises:
        BadInputError: a TAR axis for a classifier, or a FAR the data's impostor pairs cannot
            measure; DataError: data that holds no identity-labelled images (exit 3).
    """
    far = settings.tar_far()
    if far is not None and ref.task == "classify":
        raise BadInputError(f"accuracy {settings.accuracy} ranks face verification; {ref.text} outputs class logits "
                            "(a classifier's sweep ranks top-1)", parameters=("accuracy",))
    accuracy = _accuracy(base, settings)
    if far is not None and accuracy is None:
        raise BadInputError(f"accuracy {settings.accuracy}: {settings.data} has too few impostor pairs to measure "
                            f"FAR {far:g} (it needs at least {math.ceil(1 / far):,})", parameters=("accuracy",))
    return accuracy


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
    return {"reachable": True, "accuracy": _accuracy(model, settings), "macs": result.report["macs"]["after"],
            "params": result.report["params"]["after"], "model": "tuned" if settings.finetune_epochs else "model"}


def _finetuned(model: nn.Module, settings: SweepSettings, out: Path) -> nn.Module:
    from foadx.tasks.finetune import TrainingData, prepare_finetune
    from foadx.train import FinetuneConfig

    config = FinetuneConfig(epochs=settings.finetune_epochs, lr=settings.finetune_lr, flip=settings.flip,
                            seed=settings.seed)
    prepare_finetune(model, TrainingData(settings.data), out, config, origin="").run()
    return resolve_model(str(out)).module()


def run_sweep(ref: ModelRef, settings: SweepSettings, out: str | Path,
              progress: Callable[[str], None] | None = None, *, force: bool = False) -> dict[str, Any]:
    """Runs the sweep into ``out`` (resuming a killed one) and writes sweep.json, sweep.md,
    the figures and report.html.

    Raises:
        BadInputError: settings out of range, or ``out`` not empty and not an earlier sweep's
            output (without ``force``, which replaces it whole).
    """
    from foadx.data.calibration import images_for
    from foadx.pipeline.outputs import claim_folder, is_sweep_folder

    settings.check()
    base = ref.module().eval()
    accuracy = unpruned_accuracy(ref, base, settings)
    out = claim_folder(out, is_sweep_folder, force, "foadx sweep")
    images = images_for(ref.source, settings.data, settings.images, seed=settings.seed)
    points = []
    for criterion in settings.criteria:
        for budget in settings.budgets:
            folder = point_folder(out, criterion, budget)
            key = _point_key(ref, settings, criterion, budget)
            done, problem = read_point(folder, criterion, budget, key)
            if done is None:
                with atomic_directory(folder) as staging:
                    point = {"criterion": criterion, "budget": budget, "key": key,
                             **_make_point(base, images, settings, criterion, budget, staging)}
                    write_json(staging / POINT_FILE, point)
                done = point
                if progress:
                    progress(f"{criterion} {budget!r}: {'done' if done['reachable'] else 'unreachable'}"
                             + (f" ({problem})" if problem else ""))
            points.append({**done, "folder": str(folder)})
    report = _with_latency(ref, base, settings, points, accuracy, progress)
    _write_outputs(report, out)
    return report


def check_point(point: Any, folder: Path) -> None:
    """Checks a ``point.json``'s fields: their types, and a reachable point's model (one of
    ``POINT_MODELS``, a folder beside it holding a plan), never a path of its own choosing.

    Raises:
        BadInputError: the first field that does not check out.
    """
    reachable = point.get("reachable")
    if not isinstance(reachable, bool):
        raise BadInputError("reachable must be true or false")
    fields = {"criterion", "budget", "key", "reachable"}
    if reachable:
        fields |= {"accuracy", "macs", "params", "model"}
        wrong = [name for name in ("accuracy", "macs", "params") if not _number(point.get(name))]
        if wrong:
            raise BadInputError(f"{wrong[0]} must be a finite number")
        if point.get("model") not in POINT_MODELS or not (folder / point["model"] / "plan.json").is_file():
            raise BadInputError(f"model must be one of {', '.join(POINT_MODELS)} (a folder beside it with a plan)")
    else:
        fields.add("reason")
        if not isinstance(point.get("reason"), str):
            raise BadInputError("reason must be a string")
    unknown = sorted(set(point) - fields)
    if unknown:
        raise BadInputError(f"{unknown[0]} is not a field of a point")


def read_point(folder: Path, criterion: str, budget: float, key: str) -> tuple[dict[str, Any] | None, str]:
    """The finished point in ``folder`` and "" when it is this point's and checks out; else None
    and why ("" for none yet, or one made with other settings): the point is made again."""
    from foadx.untrusted import read_json

    path = folder / POINT_FILE
    if not path.exists() and not path.is_symlink():
        return None, ""
    try:
        point = read_json(path, POINT_FILE, MAX_POINT_BYTES)
        if not isinstance(point, dict):
            raise BadInputError("it is not a JSON object")
        if point.get("key") != key or point.get("criterion") != criterion or point.get("budget") != budget:
            return None, ""
        check_point(point, folder)
    except BadInputError as error:
        return None, f"record did not check out: {str(error).splitlines()[0]}"
    return point, ""


def _timed_pair(base: nn.Module, model: nn.Module, settings: SweepSettings) -> dict[str, Any]:
    """The pruned model's row of a ``foadx bench`` of the unpruned network and it, interleaved
    (its speedup, interval and verdict: ``foadx.bench.speedup``)."""
    from foadx.bench.models import bench_model
    from foadx.bench.run import run_bench
    from foadx.latency.measure import NETWORK_TIMING

    pair = [bench_model("unpruned", base), bench_model("pruned", model)]
    report = run_bench(pair, [settings.backend], [settings.batch], settings=NETWORK_TIMING)
    return next(row for row in report["results"] if row["model"] == "pruned")


def _with_latency(ref: ModelRef, base: nn.Module, settings: SweepSettings, points: list[dict[str, Any]],
                  accuracy: float | None, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    import torch

    from foadx.latency.measure import measure_network
    from foadx.pruning.cost import count_cost

    chw = ref.input_chw
    reference = measure_network(base, settings.backend, chw, settings.batch)["median_ms"]
    reachable = [point for point in points if point["reachable"]]
    for done, point in enumerate(reachable, start=1):
        model = resolve_model(str(Path(point["folder"]) / point["model"])).module().eval()
        row = _timed_pair(base, model, settings)
        interval = row["speedup_interval"]
        point.update(speedup=row["speedup_vs_first"], speedup_interval=interval,
                     speedup_coverage=row["speedup_coverage"], speedup_verdict=row["speedup_verdict"],
                     latency_ms=reference / row["speedup_vs_first"],
                     latency_interval_ms=[reference / interval[1], reference / interval[0]] if interval else None)
        if progress:
            progress(f"timed {point['criterion']} {point['budget']!r} against the unpruned network ({done}/{len(reachable)}): "
                     f"{speedup_text(point['speedup'], point['speedup_interval'], point['speedup_verdict'])}")
    base_cost = count_cost(base, torch.zeros(1, *chw))
    return envelope("foadx.sweep", {"model": ref.text,
            "backend": settings.backend, "batch": settings.batch, "budget": settings.budget_kind,
            "finetune_epochs": settings.finetune_epochs, "accuracy_axis": settings.accuracy or "accuracy",
            "unpruned": {"accuracy": accuracy, "latency_ms": reference, "macs": base_cost.macs,
                         "params": base_cost.params},
            "points": [{k: v for k, v in p.items() if k != "key"} for p in points]})


def _write_outputs(report: dict[str, Any], out: Path) -> None:
    from foadx.report.html import render_html, report_figures
    from foadx.report.markdown import render_markdown

    write_json(out / "sweep.json", report)
    write_text(out / "sweep.md", render_markdown(report))
    report_figures(report, out / "figures")
    write_text(out / "report.html", render_html(report))
