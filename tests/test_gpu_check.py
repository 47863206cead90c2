"""scripts/gpu_check.py's own machinery, on the CPU: the efficiency columns against hand-worked
figures, stage caps, a failing or starved stage recorded without losing the others."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "scripts" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def result(model: str, batch: int, ms: float, speedup: float | None) -> dict:
    return {"model": model, "backend": "torch-cuda-graph", "precision": "fp16", "batch": batch,
            "median_of_rounds_ms": ms, "throughput_ips": batch * 1000 / ms, "speedup_vs_first": speedup,
            "backend_settings": {"compile_s": {"1": 3.0}}}


def test_bench_rows_hand_worked(gpu_check):
    report = {"results": [result("full", 256, 6.0, 1.0), result("foad", 256, 2.5, 2.4), result("foad", 1, 1.0, None)]}
    full, foad, missing = gpu_check._bench_rows(report, mac_ideal=3.0)
    assert full["speedup"] is None and full["efficiency"] is None and full["images_per_s"] == pytest.approx(256000 / 6)
    assert foad["speedup"] == 2.4 and foad["mac_ideal"] == 3.0 and foad["efficiency"] == pytest.approx(0.8)
    assert missing["efficiency"] is None and foad["compile_s"] == {"1": 3.0}
    headline = gpu_check._bench_headline({"fp16": {"rows": [full, foad]}})
    assert "b256 fp16 2.40x (80% of MAC-ideal)" in headline


def test_time_cap_interrupts_python_work(gpu_check):
    started = time.perf_counter()
    with pytest.raises(gpu_check.StageTimeout, match="cap of 0 s"):
        with gpu_check.time_cap(0.2):
            while True:
                time.sleep(0.01)
    assert time.perf_counter() - started < 2


def test_a_failed_or_starved_stage_is_recorded(gpu_check, tmp_path):
    check = gpu_check.Check(tmp_path, False, time.perf_counter() + 60, 8, 16)

    def broken(check):
        raise ValueError("no such layer")

    gpu_check.run_stage(check, "latency", 30, broken)
    recorded = json.loads((tmp_path / "latency.json").read_text())
    assert recorded["status"] == "FAILED" and recorded["result"]["error"] == "ValueError: no such layer"
    check.deadline = time.perf_counter() + 5  # under the 20 s a stage needs to start
    gpu_check.run_stage(check, "pytest-gpu", 30, broken)
    assert json.loads((tmp_path / "pytest-gpu.json").read_text())["status"] == "skipped"
    assert [row.split(" | ")[1] for row in check.rows] == ["FAILED", "skipped"]
