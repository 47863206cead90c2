"""Measured rounds of a latency prune (docs/latency.md, section 5): prune to the planned widths,
time the pruned network beside the unpruned one in ``FINAL_PAIRS`` interleaved pairs on every
target's backend, judge each target on the pairs' median and min-max interval, and plan again on
the bent savings curves until every target holds; then record what was measured."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from torch import nn

from foadx.errors import CheckFailedError
from foadx.latency.acceptance import FINAL_PAIRS, Verdict, judge
from foadx.latency.measure import measure_pairs
from foadx.latency.plan import OutOfReachError, Planner, WidthPlan
from foadx.latency.targets import BackendTarget, format_ms
from foadx.provenance import provenance_of, record_provenance
from foadx.pruning.cut import PruneResult

TARGET_TOLERANCE = 0.05  # the measured latency may exceed the target by this fraction
Progress = Callable[[str, int, "int | None"], None]  # (stage, done, total)


@dataclass
class Aim:
    """One target of a plan while it is pruned: its table's planner, the target in ms (a speedup
    re-read against the unpruned network timed alongside) and the budget handed to the planner
    (the target in the table's machine state), with every measured round."""

    target: BackendTarget
    planner: Planner
    target_ms: float
    budget_ms: float
    rounds: list[dict[str, Any]]


@dataclass(frozen=True)
class Setting:
    """Where and how the rounds run: the input (C, H, W), batch, rounds allowed, allocation, and
    the fraction of each group's channels every width keeps (``--min-keep``)."""

    input_chw: tuple[int, int, int]
    batch: int
    max_rounds: int
    allocation: str
    min_keep: float = 0.0


def measured_rounds(model: nn.Module, prune_within: Callable[[list[float]], tuple[WidthPlan, PruneResult]],
                    aims: Sequence[Aim], setting: Setting, progress: Progress | None = None) -> PruneResult:
    """Prunes within the aims' budgets, measures every target, plans again until all hold (at
    most ``setting.max_rounds`` rounds). A plan whose every target is accepted or borderline
    (its median within the tolerance, the interval's upper end not) ends the rounds.

    Raises:
        LatencyTargetMissed: a target rejected in every round, or put out of reach by what the
            rounds measured (exit code 4); it carries the best plan measured.
        OutOfReachError: the first plan is already out of reach (exit code 3).
    """
    best: tuple[float, int, PruneResult] | None = None  # (worst measured / target, round, result)
    for number in range(1, setting.max_rounds + 1):
        try:
            plan, result = prune_within([aim.budget_ms for aim in aims])
        except OutOfReachError as error:
            if best is None:
                raise
            reason = f"bent by the measured rounds, the table's fastest plan is {error.fastest}"
            raise _missed(aims, best, number - 1, setting, reason) from None
        verdicts = []
        for index, aim in enumerate(aims):
            stage = f"measuring round {number} on {aim.target.name}"
            pairs = measure_pairs({"unpruned": model.eval(), "pruned": result.model.cpu()}, aim.target.backend,
                                  setting.input_chw, setting.batch, FINAL_PAIRS,
                                  progress=(lambda done, total, stage=stage: progress(stage, done, total)) if progress else None)
            verdicts.append(_judge_round(aim, plan, index, pairs))
        if all(verdict.verdict != "rejected" for verdict in verdicts):
            return _record(result, aims, setting)
        shortfall = max(aim.rounds[-1]["measured_ms"] / aim.target_ms for aim in aims)
        if best is None or shortfall < best[0]:
            best = (shortfall, number, result)
        for aim in aims:
            last = aim.rounds[-1]
            aim.planner.observe(plan.widths, last["measured_ms"], last["unpruned_ms"])
            aim.budget_ms = aim.target_ms * aim.planner.table.network_ms / last["unpruned_ms"]
    raise _missed(aims, best, setting.max_rounds, setting)


def _missed(aims: Sequence[Aim], best: tuple[float, int, PruneResult], rounds: int, setting: Setting,
            reason: str = "") -> LatencyTargetMissed:
    """The miss after ``rounds`` measured rounds (``reason``: why they stopped early), carrying
    the ``best`` round's plan marked missed."""
    _, number, result = best
    return LatencyTargetMissed(_missed_message(aims, number, rounds, setting.min_keep, reason),
                               _record(result, aims, setting, number - 1, "missed"))


class LatencyTargetMissed(CheckFailedError):
    """No measured round met every target (exit code 4); ``result`` is the best plan found (the
    round whose worst target came closest), its latency record marked ``missed``."""

    def __init__(self, message: str, result: PruneResult) -> None:
        super().__init__(message)
        self.result = result


TABLE_DISAGREES = 0.10  # predicted and measured savings further apart than this: the table is not this machine's


def _missed_message(aims: Sequence[Aim], number: int, rounds: int, min_keep: float = 0.0, reason: str = "") -> str:
    """What was asked and what the best round reached, per target, why the rounds stopped early
    (``reason``), and whether to re-profile (or, with ``min_keep`` > 0, to allow narrower groups)."""
    parts, stale = [], []
    for aim in aims:
        reached = aim.rounds[number - 1]
        speedup = reached["speedup"]
        parts.append(f"{aim.target.name}: asked {aim.target.target} ({format_ms(aim.target_ms)} ms), reached "
                     f"{speedup['median']:.2f}x [{speedup['low']:.2f}-{speedup['high']:.2f}] "
                     f"({format_ms(reached['measured_ms'])} ms)")
        measured_saving = 1 - reached["measured_ms"] / reached["unpruned_ms"]
        if abs(reached["table_saving"] - measured_saving) > TABLE_DISAGREES:
            stale.append(f"{aim.target.name} predicted a {reached['table_saving']:.0%} saving where "
                         f"{measured_saving:.0%} was measured")
    advice = (f"; the table disagrees with this machine ({', '.join(stale)}): profile again here (foadx profile)"
              if stale else "; ask for less" + (f", or allow groups narrower than --min-keep {min_keep:g}" if min_keep > 0 else ""))
    because = f"; {reason}" if reason else ""
    return (f"latency target missed in {rounds} measured round{'s' if rounds != 1 else ''}; best, round {number}: "
            f"{'; '.join(parts)}{because}{advice}")


def _judge_round(aim: Aim, plan: WidthPlan, index: int, pairs: list[dict[str, dict[str, Any]]]) -> Verdict:
    """Judges one target on its pairs and appends the round to ``aim.rounds``. A speedup is
    judged on the pairs' latency ratios (pruned / unpruned) against 1 / speedup, a time in ms on
    the pruned latencies."""
    target = aim.target.target
    ratios = [pair["pruned"]["median_ms"] / pair["unpruned"]["median_ms"] for pair in pairs]
    pruned_ms = [pair["pruned"]["median_ms"] for pair in pairs]
    unpruned_ms = statistics.median(pair["unpruned"]["median_ms"] for pair in pairs)
    if target.kind == "speedup":
        aim.target_ms = target.milliseconds(unpruned_ms)
        verdict = judge(ratios, (1.0 / target.value) * (1 + TARGET_TOLERANCE))
    else:
        verdict = judge(pruned_ms, aim.target_ms * (1 + TARGET_TOLERANCE))
    ratio = verdict if target.kind == "speedup" else judge(ratios, math.inf)  # the ratios' spread, reported
    measured = verdict if target.kind != "speedup" else judge(pruned_ms, math.inf)  # the same interval rule, in ms
    aim.rounds.append({
        "budget_ms": aim.budget_ms, "predicted_ms": plan.predicted[index] if plan.predicted else plan.predicted_ms,
        "measured_ms": measured.median, "interval_ms": [measured.low, measured.high],
        "p90_ms": statistics.median(pair["pruned"]["p90_ms"] for pair in pairs), "unpruned_ms": unpruned_ms,
        "latency_ratio": {"median": ratio.median, "low": ratio.low, "high": ratio.high, "coverage": ratio.coverage},
        "speedup": {"median": 1 / ratio.median, "low": 1 / ratio.high, "high": 1 / ratio.low},
        "pairs": [{"unpruned_ms": p["unpruned"]["median_ms"], "pruned_ms": p["pruned"]["median_ms"]} for p in pairs],
        "verdict": verdict.verdict, "table_saving": aim.planner.relative_saving(plan.widths),
        "neighbour_rounds": plan.neighbour_rounds, "exact": plan.exact})
    return verdict


def _target_record(aim: Aim, batch: int, index: int = -1) -> dict[str, Any]:
    """One target's record: what it asked, its table, and its round ``index`` (the last)."""
    last, table = aim.rounds[index], aim.planner.table
    return {"target": str(aim.target.target), "target_ms": aim.target_ms, "backend": aim.target.backend,
            "precision": aim.target.precision, "batch": batch, "unpruned_ms": last["unpruned_ms"],
            "table_unpruned_ms": table.network_ms, "lut_digest": table.digest(), "table_mode": table.mode,
            "predicted_ms": last["predicted_ms"], "measured_ms": last["measured_ms"], "measured_p90_ms": last["p90_ms"],
            "interval_ms": last["interval_ms"], "latency_ratio": last["latency_ratio"], "speedup": last["speedup"],
            "pairs": len(last["pairs"]), "interval": f"order statistics of {len(last['pairs'])} interleaved pairs (min-max for 5)",
            "tolerance": TARGET_TOLERANCE, "verdict": last["verdict"], "rounds": aim.rounds}


def _record(result: PruneResult, aims: Sequence[Aim], setting: Setting, index: int = -1,
            verdict: str | None = None) -> PruneResult:
    """Writes the latency record of round ``index`` into the plan (``parameters.latency``) and the
    report: the first target's fields at the top, every target under ``targets``, the overall
    verdict (``verdict``, else accepted or borderline from the targets')."""
    targets = [_target_record(aim, setting.batch, index) for aim in aims]
    if verdict is None:
        verdict = "accepted" if all(t["verdict"] == "accepted" for t in targets) else "borderline"
    latency = {**targets[0], "allocation": setting.allocation, "round_to": aims[0].planner.table.round_to,
               "verdict": verdict, "targets": targets}
    provenance = provenance_of(result.model)
    plan = replace(provenance.plan, parameters={**provenance.plan.parameters, "latency": latency})
    record_provenance(result.model, provenance.with_plan(plan))
    result.plan = plan
    result.report["latency"] = latency
    return result
