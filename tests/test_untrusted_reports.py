"""Issue 23, kinds 6, 8, 9, 10 and 16 for reports and baselines: a report is validated against its
kind's schema before it is rendered, user strings are drawn as plain text and escaped in HTML,
the work of drawing is bounded whatever the file holds, a baseline of another kind is named and
refused before any measuring, a FIFO is refused unopened, ratio/weight-map/plan files are read
through ``foadx.untrusted``, and a bf16 OpenVINO report passes its own schema. Each hostile input
is made here; the ones that used to hang run in a subprocess under a timeout."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from foadx.bench.gate import check_precisions, read_baseline
from foadx.bench.run import report_from_trtexec_logs
from foadx.errors import BadInputError
from foadx.report import envelope, validate_report
from foadx.runtime.registry import BACKENDS
from tests.cli_helpers import error_line, run

LOG = Path(__file__).parent / "fixtures" / "trtexec" / "trt10_full.log"
MATHTEXT = r"$\frac{$<script>x</script>"


def latency_report() -> dict:
    """A valid latency report, made from a shipped trtexec log (nothing is measured)."""
    return report_from_trtexec_logs([("a", LOG)], 1, "fp16")


def prune_report(groups: int = 2, criterion: str = "foad") -> dict:
    counts = {"before": 10, "after": 5, "reduction": 0.5}
    return envelope("foadx.prune", {
        "criterion": criterion, "weights": "random", "round_to": 1, "calibration_images": 8, "input_shape": [3, 32, 32],
        "plan_digest": "0" * 64, "params": counts, "macs": counts, "weights_bytes": counts,
        "groups": [{"name": f"layer{i}", "before": 16, "after": 8, "coupled": False} for i in range(groups)]})


def sweep_report() -> dict:
    return envelope("foadx.sweep", {
        "model": "m", "backend": "ort-cpu", "batch": 1, "budget": "flops", "finetune_epochs": 0,
        "unpruned": {"accuracy": 0.9, "latency_ms": 1.0, "macs": 100, "params": 10},
        "points": [{"criterion": "foad", "budget": 0.5, "reachable": True, "accuracy": 0.8, "latency_ms": 0.6,
                    "speedup": 1.6, "macs": 50}]})


def pipeline_report() -> dict:
    return envelope("foadx.pipeline", {"stages": [{"stage": "prune", "status": "ran", "reason": "new",
                                                   "key_figure": "x", "file": "prune/"}]})


def _write(path: Path, data) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def _cli(*args: object, timeout: float = 120) -> subprocess.CompletedProcess:
    """foadx in a process of its own, ended by ``timeout`` if it hangs (a regression must not hang the suite)."""
    return subprocess.run([sys.executable, "-m", "foadx_cli", *map(str, args)], capture_output=True, text=True, check=False,
                          timeout=timeout)


def _broken(report: dict, path: list, value) -> dict:
    broken = copy.deepcopy(report)
    target = broken
    for part in path[:-1]:
        target = target[part]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return broken


MALFORMED = [
    ("latency: a median as a string", latency_report, ["results", 0, "median_of_rounds_ms"], "7", "median_of_rounds_ms"),
    ("latency: null where a number belongs", latency_report, ["results", 0, "latency_ms", "p50"], None, "p50"),
    ("latency: no environment", latency_report, ["environment"], KeyError, "environment"),
    ("prune: a group's width a string", prune_report, ["groups", 0, "after"], "8", "groups/0/after"),
    ("prune: params null", prune_report, ["params"], None, "params"),
    ("prune: group name a number", prune_report, ["groups", 0, "name"], 5, "groups/0/name"),
    ("sweep: budget a string", sweep_report, ["points", 0, "budget"], "0.5", "points/0/budget"),
    ("sweep: unpruned latency null", sweep_report, ["unpruned", "latency_ms"], None, "unpruned/latency_ms"),
    ("pipeline: stages an object", pipeline_report, ["stages"], {"a": 1}, "stages"),
    ("pipeline: a stage without status", pipeline_report, ["stages", 0, "status"], KeyError, "status"),
]


@pytest.mark.parametrize(("name", "make", "where", "value", "named"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_a_malformed_report_is_refused_before_rendering(tmp_path, name, make, where, value, named):
    path = _write(tmp_path / "r.json", _broken(make(), where, value))
    result = run("report", path, "--html", tmp_path / "r.html")
    assert result.exit_code == 3 and named in error_line(result) and "schema" in error_line(result), result.output
    assert not (tmp_path / "r.html").exists()


def test_reports_nested_deep_or_not_regular_are_refused_in_one_line(tmp_path):
    deep = _write(tmp_path / "deep.json", '{"kind": "foadx.latency", "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    result = run("report", deep)
    assert result.exit_code == 3 and "nested deeper than" in error_line(result)
    result = run("report", tmp_path)
    assert result.exit_code == 3 and "is a folder" in error_line(result)


def test_user_strings_are_plain_text_in_figures_and_escaped_in_html(tmp_path):
    for report in (_broken(latency_report(), ["results", 0, "model"], MATHTEXT), prune_report(criterion=MATHTEXT)):
        path = _write(tmp_path / "r.json", _broken(report, ["models", 0, "label"], MATHTEXT)
                      if report["kind"] == "foadx.latency" else report)
        result = run("report", path, "--html", tmp_path / "r.html", "--quiet")
        assert result.exit_code == 0, result.output
        page = (tmp_path / "r.html").read_text()
        assert "<script>" not in page and r"$\frac{$&lt;script&gt;x&lt;/script&gt;" in page


def test_user_strings_stay_inside_their_markdown_cell_and_come_back_whole_in_html(tmp_path):
    """A label with a line break, a pipe and a tag: the Markdown row stays one row of the same cells
    with no raw tag (it used to break the row and pass <script> into a CI summary); the HTML page
    shows the label as written."""
    label = "a\nb|c<script>x</script>"
    report = _broken(_broken(latency_report(), ["results", 0, "model"], label), ["models", 0, "label"], label)
    result = run("report", _write(tmp_path / "r.json", report), "--html", tmp_path / "r.html", "--quiet")
    assert result.exit_code == 0, result.output
    markdown = run("report", tmp_path / "r.json").output
    assert "<script>" not in markdown
    row = next(line for line in markdown.splitlines() if line.startswith("| a b"))
    assert row.startswith("| a b\\|c&lt;script&gt;x&lt;/script&gt; | ") and row.count(" | ") == 4  # five model cells
    assert "<td>a b|c&lt;script&gt;x&lt;/script&gt;</td>" in (tmp_path / "r.html").read_text()


def test_the_drawing_is_bounded_and_says_so(tmp_path):
    base = latency_report()
    rows = [{**base["results"][0], "model": f"m{i}"} for i in range(800)]
    big_latency = _write(tmp_path / "latency.json", {**base, "results": rows})
    big_prune = _write(tmp_path / "prune.json", prune_report(groups=20_000))
    for path, drawn in ((big_latency, "the first 64 of 800 drawn"), (big_prune, "the first 64 of 20000 drawn")):
        done = _cli("report", path, "--html", tmp_path / "r.html", "--quiet")  # used to run until killed
        assert done.returncode == 0, done.stderr
        assert drawn in (tmp_path / "r.html").read_text()


def test_a_fifo_as_report_or_baseline_is_refused_at_once(tmp_path):
    fifo = tmp_path / "r.json"
    os.mkfifo(fifo)
    for args in (("report", fifo), ("bench", "--trtexec-log", LOG, "--baseline", fifo, "--report", tmp_path / "o.json")):
        done = _cli(*args)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 3 and len(lines) == 1 and "not a regular file" in lines[0], done.stderr
    assert not (tmp_path / "o.json").exists()


@pytest.mark.parametrize("make", [prune_report, sweep_report, pipeline_report], ids=["prune", "sweep", "pipeline"])
def test_a_baseline_of_another_kind_is_named_before_measuring(tmp_path, make):
    baseline = _write(tmp_path / "b.json", make())
    result = run("bench", "resnet56_cifar", "--backend", "ort-cpu", "--baseline", baseline,
                 "--report", tmp_path / "o.json")
    line = error_line(result)
    assert result.exit_code == 3 and f"is a {make()['kind']} report" in line and "needs a foadx.latency report" in line
    assert not (tmp_path / "o.json").exists()


def test_a_baseline_listing_a_configuration_twice_is_refused_before_measuring(tmp_path):
    report = latency_report()
    report["results"].append(copy.deepcopy(report["results"][0]))
    result = run("bench", "resnet56_cifar", "--backend", "ort-cpu", "--duration-s", "30",
                 "--baseline", _write(tmp_path / "b.json", report), "--report", tmp_path / "o.json")
    assert result.exit_code == 3 and "twice" in error_line(result)  # at once: the 30 s measurement never started
    assert not (tmp_path / "o.json").exists()


def test_a_hostile_baseline_is_refused_in_one_line(tmp_path):
    cases = {"no environment": (_broken(latency_report(), ["environment"], KeyError), "environment"),
             "a list": ([1, 2], "not a foadx report"),
             "a kind that is no string": ({"kind": {"x": 1}}, "not a foadx report"),
             "a precision its backend does not run": (
                 _broken(_broken(latency_report(), ["results", 0, "backend"], "openvino"),
                         ["results", 0, "precision"], "fp16"), "openvino runs fp32, bf16, int8")}
    for name, (data, message) in cases.items():
        baseline = _write(tmp_path / "b.json", data)
        result = run("bench", "--trtexec-log", LOG, "--baseline", baseline, "--report", tmp_path / "o.json")
        assert result.exit_code == 3 and message in error_line(result), (name, result.output)
    with pytest.raises(BadInputError, match="baseline .* is a foadx.prune report"):
        read_baseline(_write(tmp_path / "p.json", prune_report()))


def test_every_precision_the_registry_lists_passes_the_report_schema():
    # one source: the backend registry's precisions; the schema restates none of them (bf16 failed before)
    for backend in BACKENDS.values():
        for precision in backend.precisions:
            report = latency_report()
            report["settings"]["precision"] = report["results"][0]["precision"] = precision
            report["results"][0]["backend"] = backend.name
            validate_report(report)
            check_precisions(report)


def test_openvino_bf16_bench_writes_a_report_its_schema_accepts(tmp_path):
    pytest.importorskip("openvino")
    result = run("bench", "resnet56_cifar", "--backend", "openvino", "--precision", "bf16", "--duration-s", "0.2",
                 "--rounds", "1", "--warmup-ms", "10", "--report", tmp_path / "r.json", "--quiet")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["settings"]["precision"] == "bf16" and validate_report(report).name == "foadx.latency"


def test_ratio_weight_map_and_plan_files_are_read_as_untrusted(tmp_path):
    deep = _write(tmp_path / "deep.json", "[" * 100_000 + "]" * 100_000)
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    for bad, message in ((deep, "nested deeper than"), (fifo, "not a regular file")):
        ratios = run("prune", "resnet56_cifar", "--data", "demo", "--ratios", bad, "--out", tmp_path / "p")
        assert ratios.exit_code == 3 and message in error_line(ratios), ratios.output
        mapped = run("inspect", "resnet56_cifar", "--weights", deep, "--weights-map", bad)
        assert mapped.exit_code == 3 and message in error_line(mapped), mapped.output
    (tmp_path / "artifact").mkdir()
    _write(tmp_path / "artifact" / "plan.json", "[" * 100_000 + "]" * 100_000)
    plan = run("inspect", tmp_path / "artifact")
    assert plan.exit_code == 3 and "corrupt" in error_line(plan) and "nested deeper than" in error_line(plan)


def test_a_report_without_its_prose_fields_still_renders_and_extreme_numbers_are_bad_input(tmp_path):
    """Found by an attacker: the schema let these through and the renderers then ended in exit 1."""
    sparse = {key: value for key, value in prune_report().items()
              if key not in ("weights", "input_shape", "round_to", "calibration_images")}
    result = _cli("report", _write(tmp_path / "p.json", sparse))
    assert result.returncode == 0 and "weights n/a" in result.stdout, result.stderr
    sweep = sweep_report()
    del sweep["budget"], sweep["finetune_epochs"]
    assert _cli("report", _write(tmp_path / "s.json", sweep)).returncode == 0
    extreme = sweep_report()
    extreme["points"][0].update(accuracy=1e308, macs=-1e308, latency_ms=-5.0)
    extreme["unpruned"]["accuracy"] = -1e308
    result = _cli("report", _write(tmp_path / "x.json", extreme), "--html", tmp_path / "x.html")
    if result.returncode != 0:  # matplotlib may draw it after all; if not, one line and exit 3
        assert result.returncode == 3 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "numbers cannot be drawn" in result.stderr and not (tmp_path / "x.html").exists()


@pytest.mark.parametrize("field", ["median_of_rounds_ms", "throughput_ips"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_report_holding_nan_or_infinity_is_refused_naming_where(tmp_path, field, value):
    report = latency_report()
    report["results"][0][field] = value  # json.dumps writes NaN / Infinity, which Python's reader takes back
    result = run("report", _write(tmp_path / "r.json", report))
    assert result.exit_code == 3
    assert f"holds a number that is not finite at results/0/{field}" in error_line(result)
