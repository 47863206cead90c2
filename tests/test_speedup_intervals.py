"""Issue 26, item 3: every printed speedup carries its uncertainty. Hand-made round medians give
exact per-round ratios, intervals, coverages and verdicts; the bench Markdown, the terminal table,
the sweep table, the pipeline's key figure and the figures show them; a report written before
intervals still renders; a hand-edited interval that does not check out is refused with exit 3.
Nothing here is timed."""

from __future__ import annotations

import copy
import json
import math

import pytest

from foadx.bench.run import add_speedups
from foadx.bench.speedup import MAX_SPREAD, interval_rank, median_coverage, paired_speedup, verdict
from foadx.errors import BadInputError
from foadx.report import envelope, render_markdown, validate_report
from foadx.report.speedup import speedup_text
from tests.cli_helpers import error_line, run

# The issue's busy machine: the unpruned model's rounds mostly near 1.8 ms with 70 ms stalls.
BUSY_REFERENCE = [1.8, 70.0, 1.9, 1.8, 60.0]
BUSY_PRUNED = [45.0, 40.0, 1.0, 0.9, 30.0]  # ratios 0.04, 1.75, 1.9, 2.0, 2.0


def row(model: str, rounds: list[float], p90_over_p50: float = 1.1, **extra) -> dict:
    """A latency result row whose statistics follow from ``rounds`` (ms)."""
    median = sorted(rounds)[len(rounds) // 2]
    return {"model": model, "backend": "ort-cpu", "batch": 1, "precision": "fp32", "iterations": 10 * len(rounds),
            "latency_ms": {"mean": median, "min": min(rounds), "max": max(rounds), "p50": median,
                           "p90": median * p90_over_p50},
            "round_medians_ms": rounds, "median_of_rounds_ms": median, "throughput_ips": 1000 / median, **extra}


def latency_report(rows: list[dict]) -> dict:
    add_speedups(rows, [rows[0]["model"]])
    report = envelope("foadx.latency", {
        "created": "2025-01-01T00:00:00+00:00",
        "environment": {"cpu": "test cpu", "cpu_count": 2, "gpu": None, "libraries": {}, "fingerprint": "x"},
        "settings": {"warmup_ms": 200, "duration_s": 3, "min_iterations": 10, "rounds": len(rows[0]["round_medians_ms"]),
                     "precision": "fp32"},
        "models": [{"label": r["model"], "params": None, "macs": None, "bytes": {}} for r in rows],
        "results": rows})
    validate_report(report)
    return report


def test_coverage_of_order_statistic_intervals_is_the_binomial_sum():
    assert median_coverage(5, 1) == 1 - 2 / 32  # the min-max of 5 rounds: 93.75%
    assert median_coverage(4, 1) == 1 - 2 / 16  # 87.5%: below the 90% floor
    assert median_coverage(8, 2) == 1 - 2 * (1 + 8) / 256
    assert median_coverage(11, 3) == 1 - 2 * (1 + 11 + 55) / 2048
    assert [interval_rank(n) for n in (1, 3, 5, 7, 8, 10, 11)] == [1, 1, 1, 1, 2, 2, 3]


def test_paired_ratios_median_and_min_max_interval():
    speedup = paired_speedup([10.0, 12.0, 9.0, 11.0, 10.0], [5.0, 6.0, 5.0, 5.5, 4.0])
    assert speedup.rounds == [2.0, 2.0, 1.8, 2.0, 2.5]
    assert speedup.value == 2.0 and speedup.interval == (1.8, 2.5) and speedup.coverage == 0.9375
    assert speedup.verdict == "supported"
    assert speedup_text(speedup.value, speedup.interval, speedup.verdict) == "2.00x [1.80-2.50]"


def test_an_even_number_of_rounds_takes_the_middle_pair_and_the_second_order_statistics():
    reference = [10.0] * 8
    model = [10 / r for r in (1.2, 1.3, 1.25, 1.22, 1.28, 1.24, 1.26, 1.21)]
    speedup = paired_speedup(reference, model)
    assert speedup.value == pytest.approx((1.24 + 1.25) / 2)
    assert speedup.interval == pytest.approx((1.21, 1.28))  # rank 2 of 8 at 92.97%
    assert speedup.coverage == pytest.approx(1 - 18 / 256) and speedup.verdict == "supported"


def test_the_issue_example_is_unstable():
    speedup = paired_speedup(BUSY_REFERENCE, BUSY_PRUNED)
    assert speedup.rounds == pytest.approx([0.04, 1.75, 1.9, 2.0, 2.0])
    assert speedup.value == pytest.approx(1.9) and speedup.interval == pytest.approx((0.04, 2.0))
    assert speedup.verdict == "unstable"
    assert speedup_text(speedup.value, speedup.interval, speedup.verdict) == "1.90x [0.04-2.00], unstable"


@pytest.mark.parametrize(("interval", "coverage", "tail", "expected"), [
    ((1.4, 1.6), 0.9375, 1.2, "supported"),
    ((0.97, 1.04), 0.9375, 1.2, "no measurable difference"),
    ((1.0, 1.2), 0.9375, 1.2, "no measurable difference"),  # an end at 1.0 holds it
    ((1.0, MAX_SPREAD + 0.01), 0.9375, 1.2, "unstable"),  # too wide wins over holding 1.0
    ((1.4, 1.6), 0.9375, 39.0, "unstable"),  # the issue's p90/p50 = 70/1.8
    ((1.4, 1.6), 0.75, 39.0, "too few rounds"),  # 3 rounds: nothing can be claimed at 90%
])
def test_the_verdict_rule(interval, coverage, tail, expected):
    assert verdict(interval, coverage, tail) == expected


def test_a_heavy_tail_makes_a_narrow_interval_unstable():
    assert paired_speedup([2.0] * 5, [1.0, 1.01, 0.99, 1.0, 1.0], tail=70 / 1.8).verdict == "unstable"


def test_paired_speedup_refuses_unpaired_or_empty_rounds():
    with pytest.raises(BadInputError, match="same number of rounds"):
        paired_speedup([1.0, 2.0], [1.0])
    with pytest.raises(BadInputError, match="same number of rounds"):
        paired_speedup([], [])
    with pytest.raises(BadInputError, match="> 0"):
        paired_speedup([1.0], [0.0])


def test_add_speedups_on_a_report_with_a_reference_a_model_and_a_missing_reference():
    rows = [row("full", [10.0, 12.0, 9.0, 11.0, 10.0]), row("pruned", [5.0, 6.0, 5.0, 5.5, 4.0]),
            {**row("pruned", [5.0] * 5), "batch": 8}]  # no reference at batch 8
    add_speedups(rows, ["full"])
    assert rows[0]["speedup_vs_first"] == 1.0 and rows[0]["speedup_verdict"] == "reference"
    assert rows[1]["speedup_vs_first"] == 2.0 and rows[1]["speedup_interval"] == [1.8, 2.5]
    assert rows[1]["speedup_coverage"] == 0.9375 and rows[1]["speedup_rounds"] == [2.0, 2.0, 1.8, 2.0, 2.5]
    assert all(rows[2][key] is None for key in ("speedup_vs_first", "speedup_interval", "speedup_verdict"))


def test_rows_from_trtexec_logs_are_unpaired_ratios_of_medians():
    rows = [row("a", [4.0], source="a.log"), row("b", [2.0], source="b.log")]
    add_speedups(rows, ["a"])
    assert rows[1]["speedup_vs_first"] == 2.0 and rows[1]["speedup_interval"] is None
    assert rows[1]["speedup_verdict"] == "unpaired"
    assert speedup_text(2.0, None, "unpaired") == "2.00x (unpaired: no interval)"


def test_markdown_and_terminal_table_carry_the_interval_and_the_warning(monkeypatch):
    from foadx_cli import render

    report = latency_report([row("full", BUSY_REFERENCE, p90_over_p50=70 / 1.8), row("foad", BUSY_PRUNED),
                             row("quiet", [1.8 / r for r in (2.0, 2.1, 1.9, 2.05, 1.95)])])
    text = render_markdown(report)
    assert "| 1.00x (reference) |" in text and "| 1.90x [0.04-2.00], unstable |" in text
    assert "no measurable difference" in text and "Conover" in text  # the rule is stated beside the table
    quiet = report["results"][2]
    assert quiet["speedup_verdict"] == "unstable"  # the reference's own tail (p90 = 39 x p50) taints every ratio
    monkeypatch.setattr(render.stdout, "width", 400)  # one line per row, whatever the terminal
    with render.stdout.capture() as captured:
        render.latency_table(report)
    terminal = captured.get()
    assert "1.00x (reference)" in terminal and "1.90x [0.04-2.00], unstable" in terminal
    assert "then its confidence interval in brackets" in terminal  # plain text: rich markup eats nothing
    assert speedup_text(quiet["speedup_vs_first"], quiet["speedup_interval"], quiet["speedup_verdict"]) in terminal


def test_a_report_written_before_intervals_still_renders(tmp_path):
    report = latency_report([row("full", [10.0] * 5), row("pruned", [5.0] * 5)])
    for result in report["results"]:
        for key in ("speedup_rounds", "speedup_interval", "speedup_coverage", "speedup_verdict"):
            del result[key]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(report))
    result = run("report", path)
    assert result.exit_code == 0, result.output
    assert "2.00x (no interval recorded)" in result.output


@pytest.mark.parametrize(("field", "value", "message"), [
    ("speedup_interval", [2.5, 1.8], "must be ordered and hold the speedup"),
    ("speedup_interval", [2.1, 2.5], "must be ordered and hold the speedup"),
    ("speedup_interval", [1.8, 2.0, 2.5], "speedup_interval"),
    ("speedup_interval", [-1.0, 2.5], "speedup_interval"),
    ("speedup_interval", ["1.8", 2.5], "speedup_interval"),
    ("speedup_verdict", "great", "is not one of"),
    ("speedup_coverage", 1.5, "speedup_coverage"),
])
def test_a_hand_edited_interval_that_does_not_check_out_is_refused(tmp_path, field, value, message):
    report = latency_report([row("full", [10.0, 12.0, 9.0, 11.0, 10.0]), row("pruned", [5.0, 6.0, 5.0, 5.5, 4.0])])
    report["results"][1][field] = value
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(report))
    for args in (("report", path), ("report", path, "--html", tmp_path / "r.html")):
        result = run(*args)
        assert result.exit_code == 3, result.output
        assert message in error_line(result)


def sweep_report(**point) -> dict:
    return envelope("foadx.sweep", {
        "model": "m", "backend": "ort-cpu", "batch": 1, "budget": "flops_target", "finetune_epochs": 0,
        "unpruned": {"accuracy": 0.9, "latency_ms": 1.8, "macs": 100, "params": 10},
        "points": [{"criterion": "foad", "budget": 0.5, "reachable": True, "accuracy": 0.8, "macs": 50, **point}]})


def test_the_sweep_table_carries_the_interval_and_refuses_a_reversed_one(tmp_path):
    speedup = paired_speedup(BUSY_REFERENCE, BUSY_PRUNED)
    report = sweep_report(speedup=speedup.value, speedup_interval=list(speedup.interval), speedup_coverage=0.9375,
                          speedup_verdict=speedup.verdict, latency_ms=1.8 / speedup.value,
                          latency_interval_ms=[1.8 / 2.0, 1.8 / 0.04])
    validate_report(report)
    assert "| 1.90x [0.04-2.00], unstable |" in render_markdown(report)
    broken = copy.deepcopy(report)
    broken["points"][0]["speedup_interval"] = [2.0, 0.04]
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(broken))
    result = run("report", path)
    assert result.exit_code == 3 and "points/0" in error_line(result)
    old = sweep_report(speedup=1.6, latency_ms=1.1)  # a sweep of before intervals
    validate_report(old)
    assert "1.60x (no interval recorded)" in render_markdown(old)


def test_the_pipeline_key_figure_carries_the_interval():
    from foadx.pipeline.stages import STAGE_BY_NAME

    figure = STAGE_BY_NAME["bench"].key_figure
    current = {"speedups": {"foad ort-cpu b1": 1.9},
               "speedup_figures": {"unpruned ort-cpu b1": "1.00x (reference)",
                                   "foad ort-cpu b1": "1.90x [0.04-2.00], unstable"}}
    assert figure(current) == "unpruned ort-cpu b1 1.00x (reference), foad ort-cpu b1 1.90x [0.04-2.00], unstable"
    assert figure({"speedups": {"foad ort-cpu b1": 0.04, "x": None}}) == "foad ort-cpu b1 0.04x (no interval recorded)"


def test_the_latency_figure_draws_intervals_and_labels_unsupported_ratios(tmp_path):
    from foadx.report import plots

    report = latency_report([row("full", [10.0, 12.0, 9.0, 11.0, 10.0]), row("foad", [5.0, 6.0, 5.0, 5.5, 4.0]),
                             row("busy", [10.0, 1.0, 9.0, 11.0, 10.0])])
    assert report["results"][2]["speedup_verdict"] == "unstable"
    assert plots.latency(report, tmp_path).stat().st_size > 0
    svg = (tmp_path / "latency.svg").read_text()
    assert "not stated as fact (verdict on the bar)" in svg and svg.count("unstable") == 1  # the legend and the busy bar's label
    assert "measured" in svg


def test_the_tradeoff_figure_keeps_an_unsupported_point_off_the_pareto_front(tmp_path):
    from foadx.report import plots

    points = [{"label": "unpruned", "criterion": "unpruned", "accuracy": 0.9, "latency_ms": 2.0, "macs": 100},
              {"label": "foad 0.5", "criterion": "foad", "accuracy": 0.89, "latency_ms": 1.0, "macs": 50,
               "latency_interval_ms": [0.9, 45.0], "speedup_verdict": "unstable"}]
    plots.tradeoff(points, tmp_path)
    svg = (tmp_path / "tradeoff.svg").read_text()
    assert "unstable" in svg
    assert math.isclose(points[1]["latency_ms"], 1.0)  # the caller's points are not changed


def test_bench_records_with_and_without_speedup_figures_check_out(tmp_path):
    from foadx.pipeline.records import RecordProblem, check_entry, file_digest
    from foadx.pipeline.stages import STAGE_BY_NAME

    (tmp_path / "bench").mkdir()
    for name in ("latency.json", "latency.md"):
        (tmp_path / "bench" / name).write_text("{}")
    files = {f"bench/{name}": file_digest(tmp_path / "bench" / name) for name in ("latency.json", "latency.md")}
    old = {"report": "bench/latency.json", "markdown": "bench/latency.md", "speedups": {"foad ort-cpu b1": 0.04},
           "seconds": 1.0}
    entry = {"stage": "bench", "hash": "h", "record": old, "files": files}
    assert check_entry(entry, STAGE_BY_NAME["bench"], tmp_path) == old  # a record of before intervals
    current = {**old, "speedup_figures": {"foad ort-cpu b1": "0.04x [0.01-1.90], unstable"}}
    assert check_entry({**entry, "record": current}, STAGE_BY_NAME["bench"], tmp_path) == current
    with pytest.raises(RecordProblem, match="speedup_figures"):
        check_entry({**entry, "record": {**old, "speedup_figures": {"foad ort-cpu b1": 0.04}}}, STAGE_BY_NAME["bench"],
                    tmp_path)
