"""Several latency targets at once: the multi-dimensional knapsack on hand-worked tables (exact
optimum), against brute force, the relaxation beyond the exact size, and target parsing."""

from __future__ import annotations

import itertools
import random

import pytest

from foadx.errors import BadInputError, BudgetError
from foadx.latency.knapsack import Choice, MultiChoice, solve, solve_multi
from foadx.latency.targets import BackendTarget, LatencyTarget, format_ms, parse_targets


def widths(chosen):
    return {name: choice.width for name, choice in chosen.items()}


# Two groups, two targets (ms on backend A, ms on backend B). By hand, every combination:
#   a8 b8:   value -3,  costs (2, 2)     a8 b16:  value -2,  costs (3, 5)
#   a16 b8:  value -1,  costs (4, 2.5)   a16 b16: value  0,  costs (5, 5.5)
# Budgets (4, 3): a16 b8 (value -1, costs 4 and 2.5) is the only one better than a8 b8 within both.
TWO_D = {"a": [MultiChoice(8, -2.0, (1.0, 1.5)), MultiChoice(16, 0.0, (3.0, 2.0))],
         "b": [MultiChoice(8, -1.0, (1.0, 0.5)), MultiChoice(16, 0.0, (2.0, 3.5))]}


def test_two_dimensional_knapsack_by_hand():
    chosen, exact = solve_multi(TWO_D, (4.0, 3.0))
    assert exact and widths(chosen) == {"a": 16, "b": 8}
    chosen, _ = solve_multi(TWO_D, (5.0, 5.5))
    assert widths(chosen) == {"a": 16, "b": 16}
    chosen, _ = solve_multi(TWO_D, (3.0, 5.0))
    assert widths(chosen) == {"a": 8, "b": 16}
    with pytest.raises(BudgetError):
        solve_multi(TWO_D, (1.9, 10.0))


def test_the_first_target_alone_breaks_the_second():
    """Solved for backend A's 3.5 ms alone the plan is a8 b16 (value -2, 3 ms on A; a16 b8 costs 4),
    which runs 5 ms on B, over B's 3 ms; with both constraints only a8 b8 (2 ms, 2 ms) fits."""
    single = {name: [Choice(c.width, c.value, c.costs[0]) for c in choices] for name, choices in TWO_D.items()}
    alone = solve(single, 3.5)
    assert widths(alone) == {"a": 8, "b": 16}
    assert sum(TWO_D[n][[c.width for c in TWO_D[n]].index(w)].costs[1] for n, w in widths(alone).items()) == 5.0
    chosen, _ = solve_multi(TWO_D, (3.5, 3.0))
    assert widths(chosen) == {"a": 8, "b": 8}
    assert sum(c.costs[1] for c in chosen.values()) <= 3.0


def _brute_force(options, budgets):
    best = None
    for combination in itertools.product(*options.values()):
        if all(sum(c.costs[d] for c in combination) <= budgets[d] for d in range(len(budgets))):
            value = sum(c.value for c in combination)
            best = value if best is None or value > best else best
    return best


@pytest.mark.parametrize("dimensions", [2, 3])
def test_exact_against_brute_force(dimensions):
    rng = random.Random(dimensions)
    for _ in range(30):
        options = {f"g{g}": [MultiChoice(w, -rng.random() * (4 - w), tuple(rng.uniform(0.1, 2.0) * w
                                                                        for _ in range(dimensions)))
                             for w in range(1, 5)] for g in range(4)}
        budgets = tuple(rng.uniform(4.0, 24.0) for _ in range(dimensions))
        best = _brute_force(options, budgets)
        if best is None:
            with pytest.raises(BudgetError):
                solve_multi(options, budgets)
            continue
        chosen, exact = solve_multi(options, budgets)
        assert exact and sum(c.value for c in chosen.values()) == pytest.approx(best)
        assert all(sum(c.costs[d] for c in chosen.values()) <= budgets[d] + 1e-9 for d in range(dimensions))


def test_the_relaxation_beyond_the_exact_size_stays_within_every_budget():
    rng = random.Random(7)
    options = {f"g{g}": [MultiChoice(w, -rng.random() * (6 - w), (w * rng.uniform(0.5, 1.5), w * rng.uniform(0.5, 1.5)))
                         for w in range(1, 6)] for g in range(6)}
    budgets = (12.0, 11.0)
    chosen, exact = solve_multi(options, budgets, max_states=4)
    assert not exact
    assert all(sum(c.costs[d] for c in chosen.values()) <= budgets[d] + 1e-9 for d in range(2))
    optimum = _brute_force(options, budgets)
    assert sum(c.value for c in chosen.values()) <= optimum + 1e-12  # feasible, so never above the optimum
    exact_chosen, was_exact = solve_multi(options, budgets)
    assert was_exact and sum(c.value for c in exact_chosen.values()) == pytest.approx(optimum)


def test_malformed_choices_are_refused():
    with pytest.raises(BadInputError, match="2 finite costs"):
        solve_multi({"a": [MultiChoice(8, 0.0, (1.0,))]}, (1.0, 1.0))
    with pytest.raises(BadInputError, match="no widths"):
        solve_multi({"a": []}, (1.0, 1.0))


def test_targets_parse():
    assert parse_targets("1.5x", "torch-cpu") == [BackendTarget("torch-cpu", "fp32", LatencyTarget("speedup", 1.5))]
    assert parse_targets("ort-cpu=1.5x openvino@fp32=2ms", "torch-cpu") == [
        BackendTarget("ort-cpu", "fp32", LatencyTarget("speedup", 1.5)),
        BackendTarget("openvino", "fp32", LatencyTarget("ms", 2.0))]
    assert parse_targets("ort-cpu=1.5x,torch-cpu=1.2x", "x")[1].backend == "torch-cpu"
    for bad in ("ort-cpu=1.5x 2x", "ort-cpu=fast", "ort-cpu=1.5x ort-cpu=2x", "=1.5x"):
        with pytest.raises(BadInputError):
            parse_targets(bad, "ort-cpu")


WIDE = '''
from torch import nn

def build():
    return nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
                         nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
                         nn.Conv2d(64, 10, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
'''


@pytest.mark.slow
def test_two_backends_planned_and_measured_at_once(tmp_path):
    import json

    from foadx.latency import load_table
    from tests.cli_helpers import error_line, run

    (tmp_path / "wide.py").write_text(WIDE)
    spec = f"{tmp_path / 'wide.py'}:build"
    for backend in ("ort-cpu", "torch-cpu"):
        made = run("profile", spec, "--input-size", "32", "--backend", backend, "--out", tmp_path / f"{backend}.json")
        assert made.exit_code == 0, made.output
    result = run("prune", spec, "--input-size", "32", "--data", "demo", "--images", "16", "--criterion", "l1",
                 "--latency-target", "ort-cpu=1.15x torch-cpu=1.15x", "--lut", f"ort-cpu={tmp_path / 'ort-cpu.json'}",
                 "--lut", f"torch-cpu={tmp_path / 'torch-cpu.json'}", "--out", tmp_path / "p", "--json")
    assert result.exit_code == 0, result.output
    latency = json.loads(result.output)["latency"]
    assert [t["backend"] for t in latency["targets"]] == ["ort-cpu", "torch-cpu"]
    for target in latency["targets"]:
        assert target["lut_digest"] == load_table(tmp_path / f"{target['backend']}.json").digest()
        assert target["pairs"] == 5 and target["verdict"] in ("accepted", "borderline")
        ratio = target["latency_ratio"]
        assert ratio["low"] <= ratio["median"] <= ratio["high"] and ratio["median"] <= (1 / 1.15) * 1.05
        last = target["rounds"][-1]
        assert len(last["pairs"]) == 5 and last["interval_ms"] == [min(p["pruned_ms"] for p in last["pairs"]),
                                                                   max(p["pruned_ms"] for p in last["pairs"])]
    one_lut = run("prune", spec, "--input-size", "32", "--data", "demo", "--latency-target", "ort-cpu=1.1x torch-cpu=1.1x",
                  "--lut", tmp_path / "ort-cpu.json", "--out", tmp_path / "q")
    assert one_lut.exit_code == 3 and "several latency targets need a table per backend" in error_line(one_lut)


@pytest.mark.parametrize(("ms", "text"), [(10.0, "10.000"), (0.0123, "0.012"), (0.000412, "0.000412"), (0.0, "0.000")])
def test_milliseconds_in_messages_keep_three_significant_digits_below_a_hundredth(ms, text):
    assert format_ms(ms) == text
