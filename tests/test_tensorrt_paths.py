"""The TensorRT path around the engine: int8 Q/DQ files measured on onnxruntime here, engine
profiles, the CLI's missing-TensorRT and missing-trtexec answers, trtexec logs ingested by
`foadx bench`; and the engine build + run + parity itself, marked to run where TensorRT and a
GPU exist (never in CI)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from foadx.errors import BadInputError
from foadx.export import export_onnx
from foadx.export.quantize import Int8Options, quantize_int8
from foadx.export.tensorrt import EngineOptions, EngineProfile
from foadx.report.schema import validate_report
from foadx_cli.app import app

FIXTURES = Path(__file__).parent / "fixtures" / "trtexec"


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def have_tensorrt_and_gpu() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available()


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory, digits_32):
    from conftest import realistic

    model = realistic("vgg16_cifar", digits_32)
    folder = tmp_path_factory.mktemp("trt")
    export_onnx(model, folder / "m.onnx", verify=False, prelu_rewrite=False)
    return model, folder / "m.onnx"


def test_int8_qdq_file_for_tensorrt_is_symmetric_qdq(digits_model, digits_32, tmp_path):
    _, fp32 = digits_model
    result = quantize_int8(fp32, tmp_path / "m.int8.onnx", digits_32.numpy(), target="tensorrt",
                           options=Int8Options(min_cosine=-1.0))  # the floor is tests/test_int8.py's subject
    quantized = onnx.load(str(tmp_path / "m.int8.onnx"))
    ops = {node.op_type for node in quantized.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and result["qdq_nodes"] > 0
    assert result["form"]["activations"] == "int8"
    metadata = {p.key: p.value for p in quantized.metadata_props}
    assert metadata["foadx.precision"] == "int8" and metadata["foadx.input_name"] == "input"


def test_engine_profiles():
    assert EngineProfile.fixed(8).shapes((3, 112, 112)) == ((8, 3, 112, 112),) * 3
    assert EngineProfile(1, 8, 256).shapes((3, 32, 32))[2] == (256, 3, 32, 32)
    with pytest.raises(BadInputError):
        EngineProfile(4, 2, 8)
    with pytest.raises(BadInputError):
        EngineOptions(precision="int4")


@pytest.mark.skipif(have_tensorrt_and_gpu(), reason="checks the missing-TensorRT path")
def test_export_trt_without_tensorrt_exits_6_before_any_work(tmp_path):
    result = run("export", "resnet56_cifar", "--out", tmp_path / "r.onnx", "--trt", "--batch", "4", "--quiet")
    assert result.exit_code == 6 and 'pip install "foadx[trt]"' in result.output
    # refused before any work: nothing of the pipeline ran
    assert not (tmp_path / "r.onnx").exists() and not (tmp_path / "r.engine").exists()
    assert run("export", "resnet56_cifar", "--out", tmp_path / "r.onnx", "--opset", "17", "--quiet").exit_code == 0
    assert run("build-engine", tmp_path / "r.onnx").exit_code == 6


def test_export_int8_writes_a_qdq_file_and_refuses_fp16_without_trt(tmp_path):
    result = run("export", "resnet56_cifar", "--out", tmp_path / "r.onnx", "--precision", "int8", "--calib-images", "32",
                 "--min-cosine", "0", "--json", "--quiet")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["int8"]["path"] == str(tmp_path / "r.int8.onnx")
    fp16 = run("export", "resnet56_cifar", "--out", tmp_path / "r.onnx", "--precision", "fp16")
    assert fp16.exit_code == 3 and "--trt" in fp16.output
    both = run("export", "resnet56_cifar", "--out", tmp_path / "r.onnx", "--trt", "--batch", "4", "--max-batch", "8")
    assert both.exit_code == 3 and "fixes the engine's batch" in both.output


@pytest.mark.skipif(__import__("shutil").which("trtexec") is not None, reason="trtexec is installed here")
def test_bench_trtexec_backend_without_trtexec_exits_6():
    result = run("bench", "resnet56_cifar", "--backend", "trtexec", "--quiet")
    assert result.exit_code == 6 and "trtexec is not on PATH" in result.output


def test_bench_ingests_trtexec_logs(tmp_path):
    result = run("bench", "--trtexec-log", FIXTURES / "trt10_full.log", "--trtexec-log", FIXTURES / "trt84_jetson.log",
                 "--label", "full", "--label", "jetson", "--precision", "fp16", "--report", tmp_path / "r.json", "--quiet")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    validate_report(report)
    full, jetson = report["results"]
    assert full["latency_ms"]["p95"] == 10.8698 and full["stages_ms"]["gpu_compute"]["p50"] == 7.14139
    assert full["throughput_ips"] == 130.298 and full["iterations"] == 391
    assert "p90" not in jetson["latency_ms"] and jetson["batch"] == 16
    assert jetson["throughput_ips"] == 41087.7  # implicit batch: trtexec's qps already counts images
    assert jetson["speedup_vs_first"] is None  # the first log has no batch-16 row
    markdown = run("report", tmp_path / "r.json").output
    assert "| full | 1 | gpu_compute | 7.5840 | 7.1414 | 10.2881 | 12.9485 |" in markdown
    gate = ("bench", "--trtexec-log", FIXTURES / "trt10_full.log", "--label", "full", "--precision", "fp16",
            "--baseline", tmp_path / "r.json", "--max-regression", "5", "--quiet")
    missing = run(*gate)  # the baseline's jetson row is not in this run: a gap in coverage fails
    assert missing.exit_code == 5 and "missing in this run" in missing.output, missing.output
    assert run(*gate, "--allow-missing").exit_code == 0
    assert run("bench", "--trtexec-log", FIXTURES / "trt10_full.log", "--label", "a", "--label", "b").exit_code == 3


@pytest.mark.gpu
@pytest.mark.skipif(not have_tensorrt_and_gpu(), reason="needs TensorRT and a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_engine_build_run_and_parity(digits_model, tmp_path, precision):
    from foadx.export.engine_check import check_engine
    from foadx.export.tensorrt import build_engine
    from foadx.runtime import open_session

    _, onnx_path = digits_model
    profile = EngineProfile(1, 4, 8)
    sidecar = build_engine(onnx_path, tmp_path / "m.engine", EngineOptions(precision=precision, profile=profile))
    assert sidecar["precision"] == precision and sidecar["profile"] == {"min_batch": 1, "opt_batch": 4, "max_batch": 8}
    assert check_engine(tmp_path / "m.engine", onnx_path, precision, None, profile)["min_sample_cosine"] >= 0.999
    session = open_session("trt", tmp_path / "m.engine")
    assert session.timed_step(4)() > 0 and min(session.last_transfer_ms) >= 0
    batch = np.zeros((3, 3, 32, 32), np.float32)
    assert session.run(batch)[0].shape == (3, 10)


@pytest.mark.skipif(__import__("shutil").which("trtexec") is not None, reason="trtexec is installed here")
def test_jetson_script_says_what_is_missing(tmp_path):
    import subprocess

    script = Path(__file__).parents[1] / "deploy" / "jetson" / "build_and_bench.sh"
    completed = subprocess.run(["sh", str(script), "model.onnx", "1", "fp16", str(tmp_path / "out")],
                               capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "TRTEXEC": "/nonexistent"})
    assert completed.returncode == 6 and "trtexec not found" in completed.stderr
