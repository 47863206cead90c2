"""trtexec: parsing real performance summaries (TensorRT 7.x/8.0, 8.4 Jetson, 10.2; fixtures cite
their public sources) and building command lines from foadx's options."""

from __future__ import annotations

from pathlib import Path

import pytest

from foadx.errors import BadInputError
from foadx.runtime.engine_options import EngineOptions, EngineProfile
from foadx.runtime.trtexec import TrtexecOptions, parse_trtexec_log, read_trtexec_log, trtexec_command

FIXTURES = Path(__file__).parent / "fixtures" / "trtexec"


def test_tensorrt_10_summary_every_percentile():
    summary = read_trtexec_log(FIXTURES / "trt10_full.log")
    assert summary.tensorrt_version == "10.2.0" and summary.batch == 1
    assert summary.throughput_qps == 130.298
    assert summary.stages["latency"] == {"min": 5.38672, "max": 13.3664, "mean": 7.60628, "p50": 7.16092,
                                         "p90": 10.2996, "p95": 10.8698, "p99": 12.9675}
    assert summary.stages["h2d"]["p95"] == 0.0270996 and summary.stages["d2h"]["max"] == 0.110596
    assert summary.stages["gpu_compute"]["mean"] == 7.58404 and summary.stages["enqueue"]["p99"] == 14.1848
    assert summary.host_walltime_s == 3.00082 and summary.gpu_compute_total_s == 2.96536
    assert summary.iterations == round(2965.36 / 7.58404)


def test_tensorrt_8_jetson_summary_has_only_p99():
    summary = read_trtexec_log(FIXTURES / "trt84_jetson.log")
    assert summary.tensorrt_version == "8.4.0" and summary.batch == 16
    assert set(summary.stages) == {"latency", "enqueue", "h2d", "gpu_compute", "d2h"}
    assert "p90" not in summary.stages["latency"] and summary.stages["latency"]["p99"] == 0.420288


def test_older_summary_with_end_to_end_latency():
    summary = read_trtexec_log(FIXTURES / "trt8_end_to_end.log")
    assert summary.stages["end_to_end"]["mean"] == 636.196 and summary.tensorrt_version is None
    assert summary.iterations is None


def test_logs_without_a_summary_are_refused(tmp_path):
    with pytest.raises(BadInputError, match="no trtexec performance summary"):
        parse_trtexec_log("[I] Building engine...\n&&&& FAILED TensorRT.trtexec")
    with pytest.raises(BadInputError, match="Throughput"):
        parse_trtexec_log("=== Performance summary ===\n[I] Latency: min = 1 ms, max = 2 ms, mean = 1.5 ms, median = 1.5 ms")
    with pytest.raises(BadInputError, match="cannot read trtexec log"):
        read_trtexec_log(tmp_path / "missing.log")


def test_command_for_an_onnx_build_with_a_dynamic_batch_profile():
    engine = EngineOptions("fp16", EngineProfile(1, 8, 256), workspace_gb=2, timing_cache="cache.bin")
    options = TrtexecOptions(engine, save_engine="m.engine", warmup_ms=500, duration_s=5)
    command = trtexec_command("m.onnx", "input", (3, 112, 112), options)
    assert command == [
        "trtexec", "--onnx=m.onnx", "--minShapes=input:1x3x112x112", "--optShapes=input:8x3x112x112",
        "--maxShapes=input:256x3x112x112", "--fp16", "--memPoolSize=workspace:2048M", "--timingCacheFile=cache.bin",
        "--saveEngine=m.engine", "--warmUp=500", "--duration=5", "--iterations=10", "--useCudaGraph",
    ]


def test_command_per_precision_and_for_a_saved_engine():
    fp32 = trtexec_command("m.onnx", "input", (3, 32, 32), TrtexecOptions(EngineOptions("fp32"), use_cuda_graph=False))
    assert "--fp16" not in fp32 and "--int8" not in fp32 and "--useCudaGraph" not in fp32
    int8 = trtexec_command("q.onnx", "input", (3, 32, 32), TrtexecOptions(EngineOptions("int8")))
    assert "--int8" in int8
    engine = trtexec_command("m.engine", "input", (3, 112, 112), TrtexecOptions(EngineOptions(profile=EngineProfile(1, 4, 4))))
    assert engine[1:3] == ["--loadEngine=m.engine", "--shapes=input:4x3x112x112"]


@pytest.mark.parametrize("make", [lambda: EngineOptions("int4"), lambda: EngineProfile(2, 1, 1),
                                  lambda: EngineProfile(1, 9, 8), lambda: EngineOptions(workspace_gb=0)])
def test_bad_engine_options_shared_by_trtexec(make):
    with pytest.raises(BadInputError):
        make()
