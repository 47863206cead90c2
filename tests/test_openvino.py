"""The OpenVINO backend against onnxruntime and torch: verify, bench and eval, with the inference
precision set explicitly and read back. Skips where OpenVINO is not installed (CI installs it)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from foadx.errors import MissingDependencyError
from foadx.runtime import SessionOptions, open_session
from tests.cli_helpers import error_line, run

ov = pytest.importorskip("openvino")
HAS_BF16 = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


@pytest.fixture(scope="module")
def face(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ov")
    torch.manual_seed(0)
    result = run("finetune", "mobilefacenet", "--input-size", "32", "--task", "face", "--data", "demo", "--epochs", "1",
                 "--steps-per-epoch", "20", "--out", folder / "face", "--quiet")
    assert result.exit_code == 0, result.output
    assert run("export", folder / "face", "--out", folder / "face.onnx", "--quiet").exit_code == 0
    return folder


def test_openvino_runs_the_file_like_onnxruntime(face):
    batch = np.random.default_rng(0).standard_normal((5, 3, 32, 32), dtype=np.float32)
    ov_session = open_session("openvino", face / "face.onnx")
    ort_session = open_session("ort-cpu", face / "face.onnx")
    got, want = ov_session.run(batch)[0], ort_session.run(batch)[0]
    assert got.shape == want.shape == (5, 128)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert ov_session.settings()["inference_precision"] == "fp32"


def test_verify_on_openvino_passes_and_records_the_precision_used(face, tmp_path):
    result = run("verify", face / "face.onnx", "--against", face / "face", "--backend", "openvino",
                 "--report", tmp_path / "p.json")
    assert result.exit_code == 0, result.output
    assert "parity: openvino fp32 vs torch fp32" in result.output
    report = json.loads((tmp_path / "p.json").read_text())
    assert report["runtime"]["backend"] == "openvino" and report["runtime"]["inference_precision"] == "fp32"


def test_verify_on_openvino_catches_a_wrong_model(face, tmp_path):
    state = torch.load(face / "face" / "weights.pt", weights_only=True)
    state["stem.conv.weight"][0] += 1.0
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "plan.json").write_text((face / "face" / "plan.json").read_text())
    torch.save(state, tmp_path / "bad" / "weights.pt")
    result = run("verify", face / "face.onnx", "--against", tmp_path / "bad", "--backend", "openvino", "--quiet")
    assert result.exit_code == 4 and "parity FAILED (openvino fp32)" in error_line(result)


@pytest.mark.skipif(HAS_BF16, reason="checks a CPU without bf16")
def test_bf16_is_refused_where_the_cpu_would_run_fp32(face):
    with pytest.raises(MissingDependencyError, match="no bf16 support"):
        open_session("openvino", face / "face.onnx", SessionOptions(precision="bf16"))
    result = run("verify", face / "face.onnx", "--against", face / "face", "--backend", "openvino", "--precision", "bf16")
    assert result.exit_code == 6


@pytest.mark.skipif(not HAS_BF16, reason="needs a CPU with bf16")
def test_bf16_runs_and_says_so(face, tmp_path):
    result = run("verify", face / "face.onnx", "--against", face / "face", "--backend", "openvino",
                 "--precision", "bf16", "--report", tmp_path / "p.json")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "p.json").read_text())["runtime"]["inference_precision"] == "bf16"


def test_bench_and_eval_on_openvino(face, tmp_path):
    result = run("bench", face / "face.onnx", "--backend", "openvino,ort-cpu", "--duration-s", "0.2",
                 "--min-iterations", "3", "--report", tmp_path / "lat.json", "--quiet")
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "lat.json").read_text())["results"]
    settings = {row["backend"]: row["backend_settings"] for row in rows}
    assert settings["openvino"]["inference_precision"] == "fp32" and settings["openvino"]["precision"] == "fp32"
    on_ov = run("eval", face / "face.onnx", "--data", "demo", "--backend", "openvino", "--json")
    on_ort = run("eval", face / "face.onnx", "--data", "demo", "--json")
    assert on_ov.exit_code == on_ort.exit_code == 0, on_ov.output + on_ort.output
    ov_report, ort_report = json.loads(on_ov.output), json.loads(on_ort.output)
    assert ov_report["task"] == "face" and ov_report["backend"] == "openvino"
    assert ov_report["accuracy"] == pytest.approx(ort_report["accuracy"], abs=1e-9)


def test_a_pytorch_model_is_not_evaluated_on_openvino(face):
    result = run("eval", face / "face", "--data", "demo", "--backend", "openvino")
    assert result.exit_code == 3 and "export it for openvino" in error_line(result)


def test_a_file_openvino_cannot_convert_says_why_in_one_line(tmp_path):
    """OpenVINO's error opens with source locations and check layers; the line it gives is the
    reason (here a dilation beyond the input), not "Exception from src/inference/...:"."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1], dilations=[100000, 100000])],
                              "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 32, 32])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "dilated.onnx"))
    result = run("bench", tmp_path / "dilated.onnx", "--backend", "openvino", "--duration-s", "0.1")
    line = error_line(result)
    assert result.exit_code == 3 and "larger than the data shape" in line and "Exception from" not in line, line
