"""foadx bench: a real measurement on the CPU writes a schema-valid report; the gate; Markdown.
No timing thresholds: only structure, ordering and positivity are asserted."""

from __future__ import annotations

import copy
import json

import jsonschema
import numpy as np
import onnx
import pytest
import torch

import foadx
from foadx.bench import bench_model, compare_to_baseline, parse_batches, run_bench
from foadx.errors import BadInputError, RegressionError
from foadx.export import export_onnx
from foadx.report import read_report, render_markdown
from foadx.report.schema import schema_for
from foadx.runtime import SessionOptions, TimingSettings


@pytest.fixture(scope="module")
def report(tmp_path_factory, digits_32):
    torch.manual_seed(0)
    full = foadx.build_model("resnet56_cifar").eval()
    pruned = foadx.prune(full, digits_32, ratio=0.5).model.eval()
    onnx_path = tmp_path_factory.mktemp("bench") / "pruned.onnx"
    export_onnx(pruned, onnx_path, opset=17, verify=False)
    models = [bench_model("full", full), bench_model("pruned", pruned), bench_model("pruned-onnx", onnx_path)]
    settings = TimingSettings(warmup_ms=20, duration_s=0.3, min_iterations=6, rounds=3)
    ticks = []
    measured = run_bench(models[:2], ["ort-cpu", "torch-cpu"], [1, 2], options=SessionOptions(threads=1),
                         settings=settings, progress=lambda done, total: ticks.append((done, total)))
    onnx_only = run_bench(models[2:], ["ort-cpu"], [1], settings=settings)
    return measured, onnx_only, ticks, (full, pruned, onnx_path)


def test_report_follows_its_schema(report):
    measured, onnx_only, _, _ = report
    jsonschema.validate(measured, schema_for("foadx.latency"))
    jsonschema.validate(onnx_only, schema_for("foadx.latency"))
    assert len(measured["results"]) == 2 * 2 * 2  # models x backends x batches


def test_percentiles_are_ordered_and_numbers_positive(report):
    for result in report[0]["results"]:
        latency = result["latency_ms"]
        assert 0 < latency["min"] <= latency["p50"] <= latency["p90"] <= latency["p95"] <= latency["p99"] <= latency["max"]
        assert latency["std"] >= 0 and result["iterations"] >= 6
        assert len(result["round_medians_ms"]) == 3
        assert result["throughput_ips"] == pytest.approx(result["batch"] * 1000 / result["median_of_rounds_ms"])


def test_speedups_are_against_the_first_model(report):
    results = {(r["model"], r["backend"], r["batch"]): r for r in report[0]["results"]}
    for (model, backend, batch), result in results.items():
        first = results[("full", backend, batch)]
        if model == "full":
            continue
        ratios = np.asarray(first["round_medians_ms"]) / np.asarray(result["round_medians_ms"])  # round by round
        assert result["speedup_rounds"] == pytest.approx(ratios.tolist())
        assert result["speedup_vs_first"] == pytest.approx(float(np.median(ratios)))
        assert result["speedup_interval"] == pytest.approx([ratios.min(), ratios.max()])  # 3 rounds: the min-max
        assert result["speedup_coverage"] == pytest.approx(0.75) and result["speedup_verdict"] == "too few rounds"
    assert all(results[("full", b, n)]["speedup_vs_first"] == 1.0 for (_, b, n) in results)
    assert all(results[("full", b, n)]["speedup_verdict"] == "reference" for (_, b, n) in results)


def resnet56_macs(model) -> int:
    """By hand from the layer widths: a 3x3 conv costs 9 * in * out per output position (32x32,
    then 16x16 and 8x8 after each stride-2 block), the classifier in * out."""
    side, total = 32, 9 * 3 * model.conv1.out_channels * 32 * 32
    for block in model.layers:
        side //= block.conv1.stride[0]
        for conv in (block.conv1, block.conv2):
            total += 9 * conv.in_channels * conv.out_channels * side * side
    return total + model.fc.in_features * model.fc.out_features


def test_sizes_and_settings_are_recorded(report):
    measured, onnx_only, ticks, (full, pruned, onnx_path) = report
    sizes = {model["label"]: model for model in measured["models"]}
    assert resnet56_macs(full) == 125_485_696 and sizes["full"]["macs"] == 125_485_696
    for label, module in (("full", full), ("pruned", pruned)):
        assert sizes[label]["params"] == sum(p.numel() for p in module.parameters())
        assert sizes[label]["macs"] == resnet56_macs(module)
        assert sizes[label]["bytes"]["weights"] == sum(t.numel() * 4 for t in module.state_dict().values() if t.is_floating_point()) + \
            sum(t.numel() * t.element_size() for t in module.state_dict().values() if not t.is_floating_point())
        assert sizes[label]["bytes"]["onnx"] > 0
    assert onnx_only["models"][0]["bytes"]["onnx"] == onnx_path.stat().st_size
    graph = onnx.load(str(onnx_path)).graph  # an ONNX file's params: its float initializers (BN folded)
    initializers = [onnx.numpy_helper.to_array(t) for t in graph.initializer]
    assert onnx_only["models"][0]["params"] == sum(a.size for a in initializers if a.dtype == np.float32)
    assert measured["settings"]["threads"] == 1
    assert {r["backend_settings"]["intra_op_threads"] for r in measured["results"]} == {1}
    assert ticks[-1] == (3 * 8, 3 * 8) and len(ticks) == 24  # rounds x configurations


def test_gate_passes_against_itself_and_fails_on_a_slower_run(report):
    measured = report[0]
    same = compare_to_baseline(measured, measured, max_regression_pct=0.0)
    assert same.passed and all(row["change_pct"] == 0 for row in same.rows) and not same.warnings
    faster_baseline = copy.deepcopy(measured)
    faster_baseline["results"][0]["median_of_rounds_ms"] /= 2  # this run is 100% slower on one row
    gate = compare_to_baseline(measured, faster_baseline, max_regression_pct=50.0)
    assert not gate.passed and [row["passed"] for row in gate.rows].count(False) == 1
    assert gate.rows[0]["change_pct"] == pytest.approx(100.0)
    with pytest.raises(RegressionError, match=r"\+100.0%"):
        gate.raise_if_failed()
    assert compare_to_baseline(measured, faster_baseline, max_regression_pct=101.0).passed


def test_gate_warns_or_refuses_on_another_machine(report):
    measured = report[0]
    elsewhere = copy.deepcopy(measured)
    elsewhere["environment"]["cpu"] = "Some Other CPU"
    gate = compare_to_baseline(measured, elsewhere, max_regression_pct=10.0)
    assert gate.passed and "another environment" in gate.warnings[0] and "Some Other CPU" in gate.warnings[0]
    with pytest.raises(BadInputError, match="--strict-env"):
        compare_to_baseline(measured, elsewhere, max_regression_pct=10.0, strict_env=True)
    with pytest.raises(BadInputError, match="none of this run's configurations"):
        compare_to_baseline(measured, report[1], max_regression_pct=10.0)


def test_report_file_round_trip_and_markdown(report, tmp_path):
    measured = report[0]
    path = tmp_path / "report.json"
    path.write_text(json.dumps(measured))
    assert read_report(path) == measured
    text = render_markdown(measured)
    assert "| model | backend | batch | mean |" in text
    assert text.count("| pruned | ") == 1 + 4 and "| full | ort-cpu | 1 |" in text
    broken = copy.deepcopy(measured)
    broken["results"][0]["latency_ms"]["p50"] = -1.0
    path.write_text(json.dumps(broken))
    with pytest.raises(BadInputError, match="results/0/latency_ms/p50"):
        read_report(path)
    path.write_text("{not json")
    with pytest.raises(BadInputError, match="cannot read report"):
        read_report(path)


def test_parse_batches():
    assert parse_batches("1,8,64,256") == [1, 8, 64, 256]
    for bad in ("", "0", "1,1", "a,b", "-4"):
        with pytest.raises(BadInputError):
            parse_batches(bad)


def test_onnx_models_cannot_run_on_torch_backends(report):
    onnx_path = report[3][2]
    with pytest.raises(BadInputError, match="torch backends need a model or artifact"):
        run_bench([bench_model("x", onnx_path)], ["torch-cpu"], [1], settings=TimingSettings(0, 0.01, 1, 1))
