"""Latency-aware pruning: the knapsack against brute force and a hand-worked table, the table's
interpolation and refusals, and a small end-to-end run measured on torch CPU."""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import random

import pytest
import torch
from torch import nn

import foadx
from foadx.errors import BadInputError, BudgetError, CheckFailedError
from foadx.latency import LatencyTarget, load_table
from foadx.latency.api import prune_to_latency
from foadx.latency.fit import repeated_median
from foadx.latency.knapsack import Choice, solve
from foadx.latency.plan import legal_widths
from foadx.latency.table import LatencyTable, MissingLatencyError
from foadx.latency.units import UnitKey
from foadx.latency.values import ChannelRemover, distortion_values
from foadx.pruning.api import prunable_groups
from foadx.pruning.apply import apply_kept
from foadx.pruning.criteria import CRITERIA, Criterion
from foadx.pruning.groups import ChannelGroup, build_dependency_graph
from tests.cli_helpers import error_line, run
from tests.test_generality import GroupedBlock


def test_knapsack_hand_worked():
    options = {"a": [Choice(8, -3.0, 1.0), Choice(16, 0.0, 2.0)],
               "b": [Choice(8, -1.0, 1.5), Choice(16, 0.0, 3.0)],
               "c": [Choice(8, -2.0, 0.5), Choice(16, 0.0, 1.0)]}
    # all 16: 6.0 ms > 5; the best within 5.0 ms is a16 b8 c16 (4.5 ms, value -1)
    assert {name: choice.width for name, choice in solve(options, 5.0).items()} == {"a": 16, "b": 8, "c": 16}
    assert {name: choice.width for name, choice in solve(options, 6.0).items()} == {"a": 16, "b": 16, "c": 16}
    with pytest.raises(BudgetError, match="cheapest widths cost 3.000 ms"):
        solve(options, 2.9)


def test_knapsack_is_exact_against_brute_force():
    rng = random.Random(7)
    for _ in range(30):
        options = {g: [Choice(w, -rng.random() * (4 - i), round(rng.uniform(0.1, 2.0), 3)) for i, w in enumerate((8, 16, 24, 32))]
                   for g in "abcd"}
        budget = rng.uniform(1.0, 6.0)
        feasible = [combo for combo in itertools.product(*options.values()) if sum(c.cost_ms for c in combo) <= budget]
        if not feasible:
            continue
        best = max(sum(c.value for c in combo) for combo in feasible)
        chosen = solve(options, budget)
        assert sum(c.cost_ms for c in chosen.values()) <= budget + 1e-9
        assert sum(c.value for c in chosen.values()) == pytest.approx(best)


def key(cin=16, cout=16, groups=1) -> UnitKey:
    return UnitKey(1, cin, cout, 8, 8, (3, 3), (1, 1), (1, 1), groups, True, "relu")


def table(network_ms=1.0) -> LatencyTable:
    return LatencyTable("m@0", (32, 32), 1, "torch-cpu", "fp32", 8, {"cpu": "x"}, network_ms)


def test_interpolation_and_rounding_up_never_free():
    lut = table()
    lut.add(key(cout=16), 1.0)
    lut.add(key(cout=32), 2.0)
    assert lut.lookup(key(cout=24)) == pytest.approx(1.5)
    assert lut.lookup(key(cout=8)) == 1.0  # only wider measured: the next wider one
    with pytest.raises(MissingLatencyError):
        lut.lookup(key(cout=40))
    lut.add(key(16, 16, 16), 0.2)  # depthwise: in = out = groups move together
    lut.add(key(48, 48, 48), 0.6)
    assert lut.lookup(key(32, 32, 32)) == pytest.approx(0.4)


def test_repeated_median_line_by_hand():
    # four points on 1 ms per 16 channels and one timed in a slow moment: each good point's
    # slopes to the others are three 1/16 and one steep (median 1/16), the outlier's are all
    # steep; the median of the five is 1/16; intercepts 0, 0, 0, 0, 15: median 0
    line = repeated_median({16: 1.0, 32: 2.0, 48: 3.0, 64: 4.0, 80: 20.0})
    assert (line.slope, line.intercept) == (1 / 16, 0.0)
    assert line.at(80) == 5.0 and line.at(8) == 1.0  # below the narrowest: the narrowest's
    falling = repeated_median({16: 3.0, 32: 2.0, 48: 1.0})  # a conv is never faster wider: slope 0
    assert (falling.slope, falling.at(16), falling.at(48)) == (0.0, 2.0, 2.0)


def test_a_series_of_three_or_more_is_read_through_its_line():
    lut = table()
    for width, ms in {16: 1.0, 32: 2.0, 48: 3.0, 64: 4.0, 80: 20.0}.items():
        lut.add(key(cout=width), ms)
    assert lut.lookup(key(cout=80)) == 5.0 and lut.lookup(key(cout=40)) == 2.5
    with pytest.raises(MissingLatencyError):  # beyond the widest measured: not extrapolated
        lut.lookup(key(cout=96))
    lut.add(key(cin=32), 1.5)  # along the input axis (out = 16) two points: the entry stands
    assert lut.lookup(key(cin=32)) == 1.5
    lut.add(key(cin=48), 2.0)
    lut.add(key(cin=64), 9.0)
    # four points on 1 ms per 32 channels, 64 an outlier: per point the median slopes are
    # 1/32, 1/32, 1/32, 7.5/32 -> 1/32; intercepts 0.5, 0.5, 0.5, 7 -> 0.5
    assert lut.lookup(key(cin=64)) == 2.5 and lut.lookup(key(cin=32)) == 1.5


def test_the_table_round_trips_and_bad_tables_are_refused(tmp_path):
    lut = table()
    lut.add(key(), 0.5)
    lut.checks.append({"fraction": 0.5, "predicted_saving": 0.4, "measured_saving": 0.3})
    lut.save(tmp_path / "lut.json")
    loaded = load_table(tmp_path / "lut.json")
    assert loaded.digest() == lut.digest() and loaded.checks == lut.checks
    (tmp_path / "bad.json").write_text('{"kind": "foadx.latency_lut", "schema_version": 2, "model": "m"}')
    with pytest.raises(BadInputError, match="not a foadx latency table: bad field"):
        load_table(tmp_path / "bad.json")
    (tmp_path / "neg.json").write_text(json.dumps({**lut.to_json(), "entries": [{"key": key().to_json(), "ms": -1}]}))
    with pytest.raises(BadInputError, match=r"entries\[0\]\.ms is -1; a latency is a number of milliseconds in \(0, 3\.6e\+06\]"):
        load_table(tmp_path / "neg.json")


def test_targets_parse():
    assert LatencyTarget.parse("2.0ms") == LatencyTarget("ms", 2.0)
    assert LatencyTarget.parse("2.5x").milliseconds(5.0) == 2.0
    for bad in ("fast", "0ms", "-1x", "2"):
        with pytest.raises(BadInputError, match="2.0ms or 2.5x"):
            LatencyTarget.parse(bad)


def test_legal_widths_are_multiples_of_the_step_and_the_conv_groups():
    group = ChannelGroup("g", 48, ("g",), (), False, channel_groups=3)
    assert legal_widths(group, 8) == [24, 48]  # multiples of lcm(8, 3)


class Sum(nn.Module):
    """x -> three 1x1 channels scaled 1, 2, 3 -> their sum: removing channel c removes (c+1) x."""

    def __init__(self) -> None:
        super().__init__()
        self.spread = nn.Conv2d(1, 3, 1, bias=False)
        self.gather = nn.Conv2d(3, 1, 1, bias=False)
        self.spread.weight.data = torch.tensor([1.0, 2.0, 3.0]).reshape(3, 1, 1, 1)
        self.gather.weight.data = torch.ones(1, 3, 1, 1)

    def forward(self, x):
        return self.gather(torch.relu(self.spread(x)))


def test_values_are_the_output_distortion_of_the_criterions_choice_by_hand():
    model, images = Sum(), torch.ones(4, 1, 1, 1)  # output 1 + 2 + 3 = 6 everywhere
    [group] = prunable_groups(model, images[:1])
    scores = torch.tensor([1.0, 2.0, 3.0])  # top-k keeps the largest: width 2 drops channel 0
    values = distortion_values(model, [images], [group], {group.name: scores}, False, {group.name: [1, 2, 3]})
    assert values[group.name] == pytest.approx({1: -(1 + 2) ** 2 / 36, 2: -(1 ** 2) / 36, 3: 0.0})
    similarity = torch.tensor([[1.0, 0.9, 0.1], [0.9, 1.0, 0.1], [0.1, 0.1, 1.0]], dtype=torch.float64)
    values = distortion_values(model, [images], [group], {group.name: similarity}, True, {group.name: [2]})
    assert values[group.name][2] == pytest.approx(-(2 ** 2) / 36)  # FOAD keeps 0 and 2: the near-duplicate 1 goes
    assert torch.equal(model.gather.weight, torch.ones(1, 3, 1, 1))  # the caller's model is untouched


@pytest.mark.parametrize("spec", ["mobilefacenet", "resnet56_cifar", "vgg16_cifar", "grouped"])
def test_hiding_channels_from_consumers_is_removing_them(spec):
    torch.manual_seed(0)
    model = GroupedBlock() if spec == "grouped" else foadx.build_model(spec, (32, 32))
    model.eval()
    images = torch.randn(2, 3, 32, 32)
    groups = prunable_groups(model, images[:1])
    removed = {group.name: list(range(0, group.channels, 2)) for group in groups}
    remover = ChannelRemover(model, images[:1])
    pruned = copy.deepcopy(model)
    apply_kept(pruned, build_dependency_graph(pruned, images[:1]), groups,
               {group.name: sorted(set(range(group.channels)) - set(removed[group.name])) for group in groups})
    with torch.no_grad(), contextlib.ExitStack() as stack:
        for group in groups:
            stack.enter_context(remover.removed(group, removed[group.name]))
        torch.testing.assert_close(model(images), pruned(images), rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def profiled(tmp_path_factory):
    torch.manual_seed(0)
    model = foadx.build_model("resnet56_cifar")
    folder = tmp_path_factory.mktemp("latency")
    result = run("profile", "resnet56_cifar", "--backend", "torch-cpu", "--round-to", "8", "--out", folder / "lut.json",
                 "--json")
    assert result.exit_code == 0, result.output
    return model, folder


def test_profile_writes_a_table(profiled):
    _, folder = profiled
    lut = load_table(folder / "lut.json")
    assert lut.backend == "torch-cpu" and lut.batch == 1 and lut.round_to == 8 and lut.network_ms > 0
    assert len(lut.entries) > 20


@pytest.mark.serial  # the measured latency must reach the target: timed alone
def test_prune_to_a_measured_latency(profiled, tmp_path):
    _, folder = profiled
    result = run("prune", "resnet56_cifar", "--data", "demo", "--images", "64", "--latency-target", "1.15x",
                 "--backend", "torch-cpu", "--lut", folder / "lut.json", "--out", tmp_path / "p", "--json")
    assert result.exit_code == 0, result.output
    latency = json.loads(result.output)["latency"]
    assert latency["measured_ms"] <= latency["target_ms"] * 1.05 and len(latency["rounds"]) <= 3
    assert latency["target_ms"] == pytest.approx(latency["unpruned_ms"] / 1.15)
    assert latency["lut_digest"] == load_table(folder / "lut.json").digest()
    plan = json.loads((tmp_path / "p" / "plan.json").read_text())
    assert plan["parameters"]["latency"]["backend"] == "torch-cpu" and plan["parameters"]["widths"]
    assert all(width % 8 == 0 for width in plan["parameters"]["widths"].values())
    assert foadx.load_pruned(tmp_path / "p")(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


@pytest.mark.serial  # the measured latency must reach the target: timed alone
def test_a_global_budget_reaches_the_target_with_one_foad_budget(profiled, tmp_path):
    _, folder = profiled
    result = run("prune", "resnet56_cifar", "--data", "demo", "--images", "32", "--latency-target", "1.15x",
                 "--allocation", "global", "--backend", "torch-cpu", "--lut", folder / "lut.json",
                 "--out", tmp_path / "p", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    latency = report["latency"]
    assert latency["allocation"] == "global" and latency["measured_ms"] <= latency["target_ms"] * 1.05
    assert report["t"] is not None  # one FOAD (t, s) for every group, not per-group widths
    assert all(group["after"] % 8 == 0 or not group["pruned"] for group in report["groups"])


@pytest.mark.parametrize("allocation", ["knapsack", "global"])
def test_a_latency_prune_scores_the_channels_once(profiled, monkeypatch, allocation):
    """Every round and every bisection step cuts the one scoring; the criterion runs once."""
    model, folder = profiled
    foad = CRITERIA["foad"]
    passes = []

    def counted(inputs):
        passes.append(len(inputs.groups))
        return foad.score(inputs)

    monkeypatch.setitem(CRITERIA, "counted", Criterion("counted", "FOAD, counted", counted))
    images = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    try:
        result = prune_to_latency(model, images, "1.15x", backend="torch-cpu", table=load_table(folder / "lut.json"),
                                  criterion="counted", allocation=allocation)
        assert result.plan.criterion == "counted" and result.plan.is_pruned
    except CheckFailedError:  # a missed measured target still scored once; the count is what is checked here
        pass
    assert len(passes) == 1 and passes[0] > 0


def test_latency_refusals(profiled, tmp_path):
    model, folder = profiled
    lut = load_table(folder / "lut.json")
    base = ("prune", "resnet56_cifar", "--data", "demo", "--images", "32", "--backend", "torch-cpu",
            "--lut", folder / "lut.json", "--out", tmp_path / "p")
    slow = run(*base, "--latency-target", f"{lut.network_ms * 2:.3f}ms")
    assert slow.exit_code == 3 and "nothing to prune" in error_line(slow)
    fast = run(*base, "--latency-target", "0.001ms")
    assert fast.exit_code == 3 and "out of reach: the table's fastest plan is" in error_line(fast)
    both = run(*base, "--latency-target", "2x", "--flops-target", "0.5")
    assert both.exit_code == 3 and "give one budget" in error_line(both)
    other = json.loads((folder / "lut.json").read_text())
    (tmp_path / "batch.json").write_text(json.dumps({**other, "batch": 8}))
    wrong = run(*base[:-4], "--lut", tmp_path / "batch.json", "--out", tmp_path / "p", "--latency-target", "2x")
    assert wrong.exit_code == 3 and "profiled for batch 8, this prune needs 1" in error_line(wrong)
    (tmp_path / "foreign.json").write_text(json.dumps({**other, "environment": {**other["environment"], "cpu": "elsewhere"}}))
    foreign = run(*base[:-4], "--lut", tmp_path / "foreign.json", "--out", tmp_path / "p", "--latency-target", "2x")
    assert foreign.exit_code == 3 and "--allow-foreign-lut" in error_line(foreign)
    (tmp_path / "corrupt.json").write_text("{not json")
    corrupt = run(*base[:-4], "--lut", tmp_path / "corrupt.json", "--out", tmp_path / "p", "--latency-target", "2x")
    assert corrupt.exit_code == 3 and "not a foadx latency table" in error_line(corrupt)
    assert not (tmp_path / "p").exists()


def test_a_backend_missing_here_is_refused_before_work(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("checks the no-GPU path")
    result = run("prune", "resnet56_cifar", "--data", "demo", "--latency-target", "2x", "--backend", "torch-cuda",
                 "--out", tmp_path / "p")
    assert result.exit_code == 6 and not (tmp_path / "p").exists()
    assert run("profile", "resnet56_cifar", "--backend", "trt", "--out", tmp_path / "l.json").exit_code == 3


def test_a_measured_network_bends_the_savings_curve():
    from foadx.latency.plan import Planner
    from foadx.latency.units import Unit

    group = ChannelGroup("g", 32, ("g",), (), False)
    unit = Unit("conv", key(cin=16, cout=32), None, "g", False)
    lut = table(network_ms=3.0)
    lut.add(key(cin=16, cout=32), 2.0)
    lut.add(key(cin=16, cout=16), 1.0)
    planner = Planner(lut, [unit], [group], {"g": {16: -1.0, 32: 0.0}})
    # by hand: base = 3 - 2 = 1; at width 16 the unit costs 1, so 2.0 ms, a third saved
    assert planner.base_ms == pytest.approx(1.0) and planner.predict({"g": 16}) == pytest.approx(2.0)
    assert planner.relative_saving({"g": 16}) == pytest.approx(1 / 3)
    # measured beside an unpruned network running 6 ms (a slower machine state): 5 ms, a sixth saved
    planner.observe({"g": 16}, measured_ms=5.0, unpruned_ms=6.0)
    assert planner.predict({"g": 16}) == pytest.approx(3.0 * (1 - 1 / 6))
    # a 2.5 ms target (a sixth saved) needs the table's third; 2.75 ms needs half of it: 2.5 table ms
    assert planner.table_budget(2.5) == pytest.approx(2.0) and planner.table_budget(2.75) == pytest.approx(2.5)


def test_widths_that_cycle_with_their_neighbours_end_within_the_budget():
    from foadx.latency.plan import MAX_NEIGHBOUR_ROUNDS, Planner
    from foadx.latency.units import Unit

    # two groups, each setting the other's input: unit A (a's producer, input b), unit B (b's, input a)
    ms_a = {(16, 16): 1.0, (16, 32): 1.0, (32, 16): 3.0, (32, 32): 4.0}  # (in, out) -> ms
    ms_b = {(16, 16): 4.5, (16, 32): 1.0, (32, 16): 3.0, (32, 32): 3.5}
    lut = table(network_ms=10.0)
    for (cin, cout), ms in ms_a.items():
        lut.add(UnitKey(1, cin, cout, 8, 8, (3, 3), (1, 1), (1, 1), 1, True, "relu"), ms)
    for (cin, cout), ms in ms_b.items():
        lut.add(UnitKey(1, cin, cout, 4, 4, (3, 3), (1, 1), (1, 1), 1, True, "relu"), ms)
    units = [Unit("A", UnitKey(1, 32, 32, 8, 8, (3, 3), (1, 1), (1, 1), 1, True, "relu"), "b", "a", False),
             Unit("B", UnitKey(1, 32, 32, 4, 4, (3, 3), (1, 1), (1, 1), 1, True, "relu"), "a", "b", False)]
    groups = [ChannelGroup("a", 32, ("A",), (), False), ChannelGroup("b", 32, ("B",), (), False)]
    planner = Planner(lut, units, groups, {"a": {16: -3.0, 32: 0.0}, "b": {16: -5.0, 32: 0.0}})
    # base = 10 - 4 - 3.5 = 2.5, so 8.5 ms leaves 6 ms for the two units. Neighbours at 32: a16 + b16
    # = 3 + 3 is the only fit. Neighbours at 16: a32 + b32 = 1 + 1 fits and is worth more. Then at
    # 32 again: a cycle. Of the two sets, only a16 b16 runs within 8.5 ms (2.5 + 1 + 4.5 = 8.0;
    # a32 b32 is the unpruned 10 ms), so that is the plan, whichever set the cycle stopped on.
    plan = planner.plan(8.5, {"a": [16, 32], "b": [16, 32]})
    assert plan.neighbour_rounds == MAX_NEIGHBOUR_ROUNDS
    assert plan.widths == {"a": 16, "b": 16} and plan.predicted_ms == pytest.approx(8.0)


def test_the_savings_curve_by_hand():
    from foadx.latency.curve import SavingsCurve

    curve = SavingsCurve()
    assert curve.measured(0.3) == 0.3 and curve.predicted_for(0.3) == 0.3  # no points: the table as it is
    curve = SavingsCurve([(0.2, 0.3), (0.6, 0.5), (0.4, 0.2)])  # (0.4, 0.2): below (0.2, 0.3), noise: held at 0.3
    assert curve.measured(0.1) == pytest.approx(0.15)  # on (0, 0)-(0.2, 0.3)
    assert curve.measured(0.3) == pytest.approx(0.3)  # the flat, noise-held stretch
    assert curve.measured(0.5) == pytest.approx(0.4)  # between (0.4, 0.3) and (0.6, 0.5)
    assert curve.measured(0.9) == pytest.approx(0.75)  # beyond: the last point's ratio 0.5 / 0.6
    assert curve.predicted_for(0.3) == pytest.approx(0.4)  # on the flat stretch: where it ends
    assert curve.predicted_for(0.4) == pytest.approx(0.5) and curve.predicted_for(0.75) == pytest.approx(0.9)
    assert curve.predicted_for(-0.1) == 0.0
    curve.add(0.6, 0.45)  # a second measurement at the same prediction replaces the first
    assert curve.measured(0.6) == pytest.approx(0.45)


def test_a_keep_floor_drops_the_narrow_widths():
    from foadx.latency.plan import candidate_widths

    group = ChannelGroup("g", 128, ("g",), (), False)
    assert candidate_widths(group, 16) == [16, 32, 48, 64, 80, 96, 112, 128]
    assert candidate_widths(group, 16, 0.25) == [32, 48, 64, 80, 96, 112, 128]  # 0.25 * 128 = 32
    assert candidate_widths(group, 16, 0.3) == [48, 64, 80, 96, 112, 128]
    assert candidate_widths(group, 16, 1.0) == [128]
