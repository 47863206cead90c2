"""The runtime layer: sessions on real backends, the timing statistics, the environment."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

import foadx
from foadx.errors import BadInputError, MissingDependencyError
from foadx.export import export_onnx
from foadx.runtime import SessionOptions, TimingSettings, measure_interleaved, open_session, summarize
from foadx.runtime.environment import describe_environment, environment_differences, fingerprint
from foadx.runtime.timing import Samples


@pytest.fixture(scope="module")
def resnet(tmp_path_factory):
    torch.manual_seed(0)
    model = foadx.build_model("resnet56_cifar").eval()
    path = tmp_path_factory.mktemp("onnx") / "r.onnx"
    export_onnx(model, path, opset=17, verify=False)
    return model, path


def test_ort_and_torch_sessions_agree_with_the_model(resnet):
    model, path = resnet
    batch = np.random.default_rng(1).standard_normal((3, 3, 32, 32), dtype=np.float32)
    with torch.inference_mode():
        expected = model(torch.from_numpy(batch)).numpy()
    onnx_session = open_session("ort-cpu", path, SessionOptions(threads=1))
    torch_session = open_session("torch-cpu", model, input_shape=(None, 3, 32, 32))
    assert onnx_session.input_name == "input" and onnx_session.input_shape == (None, 3, 32, 32)
    np.testing.assert_allclose(onnx_session.run(batch)[0], expected, atol=1e-5, rtol=1e-4)
    np.testing.assert_array_equal(torch_session.run(batch)[0], expected)
    assert onnx_session.settings()["intra_op_threads"] == 1
    assert onnx_session.timed_step(2)() > 0 and torch_session.timed_step(2)() > 0


def test_wrong_input_shape_is_named(resnet):
    session = open_session("ort-cpu", resnet[1])
    with pytest.raises(BadInputError, match=r"takes Nx3x32x32, got 1x3x64x64"):
        session.run(np.zeros((1, 3, 64, 64), np.float32))


def test_backend_mismatches_are_bad_input(resnet):
    model, path = resnet
    with pytest.raises(BadInputError, match="unknown backend 'tensorrtx'"):
        open_session("tensorrtx", path)
    with pytest.raises(BadInputError, match="runs onnx files"):
        open_session("ort-cpu", model)
    with pytest.raises(BadInputError, match="runs PyTorch models"):
        open_session("torch-cpu", path)
    with pytest.raises(BadInputError, match="backend torch-cpu runs fp32, not fp16"):
        open_session("torch-cpu", model, SessionOptions(precision="fp16"), input_shape=(None, 3, 32, 32))
    with pytest.raises(BadInputError, match="precision"):
        SessionOptions(precision="int4")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
@pytest.mark.parametrize("backend", ["torch-cuda", "torch-cuda-graph"])
def test_cuda_backends_without_a_gpu(resnet, backend):
    with pytest.raises(MissingDependencyError, match="needs a CUDA GPU"):
        open_session(backend, resnet[0], input_shape=(None, 3, 32, 32))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("backend", ["torch-cuda", "torch-cuda-graph"])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_cuda_backends_match_the_cpu(resnet, backend, precision):
    model = resnet[0]
    batch = np.random.default_rng(2).standard_normal((4, 3, 32, 32), dtype=np.float32)
    expected = open_session("torch-cpu", model, input_shape=(None, 3, 32, 32)).run(batch)[0]
    session = open_session(backend, model, SessionOptions(precision=precision, channels_last=True), (None, 3, 32, 32))
    tolerance = 1e-3 if precision == "fp32" else 5e-2
    np.testing.assert_allclose(session.run(batch)[0], expected, atol=tolerance * np.abs(expected).max(), rtol=tolerance)
    assert session.timed_step(4)() > 0


def test_summary_statistics_hand_worked():
    samples = Samples(rounds=[[float(v) for v in range(1, 51)], [float(v) for v in range(51, 101)]])
    summary = summarize(samples, batch_size=4)
    latency = summary["latency_ms"]
    assert summary["iterations"] == 100
    assert latency["mean"] == pytest.approx(50.5) and latency["min"] == 1 and latency["max"] == 100
    # numpy's linear percentile on 1..100: p = 1 + q * 99 / 100
    assert latency["p50"] == pytest.approx(50.5)
    assert latency["p90"] == pytest.approx(90.1)
    assert latency["p95"] == pytest.approx(95.05)
    assert latency["p99"] == pytest.approx(99.01)
    assert latency["std"] == pytest.approx(np.std(np.arange(1, 101), ddof=1))
    assert summary["round_medians_ms"] == [25.5, 75.5]
    assert summary["median_of_rounds_ms"] == pytest.approx(50.5)
    assert summary["throughput_ips"] == pytest.approx(4 * 1000 / 50.5)


def test_interleaving_runs_every_step_in_every_round():
    order = []

    def step_for(name):
        def step():
            order.append(name)
            return 0.001

        return step

    settings = TimingSettings(warmup_ms=0, duration_s=1e-6, min_iterations=6, rounds=3)
    results = measure_interleaved({"a": step_for("a"), "b": step_for("b")}, settings)
    # at least ceil(6 / 3) iterations per round (more only if the clock has not yet moved)
    assert len(results["a"].rounds) == 3 and all(len(r) >= 2 for r in results["a"].rounds)
    assert set(results["b"].latencies_ms) == {1.0}
    runs = [(name, len(list(group))) for name, group in itertools.groupby(order)]
    assert runs[:2] == [("a", 1), ("b", 1)]  # one warm-up call each
    assert [name for name, _ in runs[2:]] == ["a", "b"] * 3 and all(length >= 2 for _, length in runs[2:])


def test_bad_timing_settings():
    with pytest.raises(BadInputError):
        TimingSettings(duration_s=0)
    with pytest.raises(BadInputError):
        TimingSettings(min_iterations=0)


def test_environment_fingerprint_tracks_what_matters():
    environment = describe_environment()
    assert environment["cpu"] and environment["cpu_count"] >= 1
    assert environment["libraries"]["onnxruntime"] and environment["libraries"]["foadx"] == foadx.__version__
    other = {**environment, "cpu": "another CPU"}
    assert fingerprint(other) != environment["fingerprint"]
    assert fingerprint({**environment, "platform": "changed", "python": "0"}) == environment["fingerprint"]
    assert environment_differences(other, environment) == [f"cpu: {environment['cpu']!r} -> 'another CPU'"]


def test_tensorrt_paths_without_tensorrt_say_what_is_missing(resnet, tmp_path):
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")
    from foadx.export.tensorrt import EngineOptions, build_engine

    with pytest.raises(MissingDependencyError, match=r'pip install "foadx\[trt\]"'):
        build_engine(resnet[1], tmp_path / "r.engine", EngineOptions())
    assert not (tmp_path / "r.engine").exists()


def test_folded_batchnorm_gives_the_same_answers(resnet):
    model = resnet[0]
    batch = np.random.default_rng(3).standard_normal((2, 3, 32, 32), dtype=np.float32)
    plain = open_session("torch-cpu", model, input_shape=(None, 3, 32, 32))
    folded = open_session("torch-cpu", model, SessionOptions(fold_bn=True), input_shape=(None, 3, 32, 32))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.model.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in plain.model.modules()) == 55
    expected = plain.run(batch)[0]
    np.testing.assert_allclose(folded.run(batch)[0], expected, atol=1e-4 * np.abs(expected).max(), rtol=1e-4)


def test_a_fixed_batch_file_runs_any_number_of_images_and_evaluates_like_a_dynamic_one(tmp_path):
    """eval fed 128 images to a file whose input fixes the batch at 3 and stopped (exit 3); now it
    runs them 3 at a time, the last chunk padded, and scores exactly what the dynamic file does."""
    from cli_helpers import run as cli

    model = foadx.build_model("resnet56_cifar").eval()
    foadx.export_onnx(model, tmp_path / "fixed.onnx", batch=3)
    foadx.export_onnx(model, tmp_path / "dynamic.onnx")
    fixed, dynamic = open_session("ort-cpu", tmp_path / "fixed.onnx"), open_session("ort-cpu", tmp_path / "dynamic.onnx")
    assert fixed.input_shape[0] == 3 and dynamic.input_shape[0] is None
    images = np.random.default_rng(0).standard_normal((7, 3, 32, 32), dtype=np.float32)
    np.testing.assert_allclose(fixed.run_any_batch(images)[0], dynamic.run(images)[0], rtol=1e-5, atol=1e-5)
    scores = [cli("eval", tmp_path / name, "--data", "demo", "--json") for name in ("fixed.onnx", "dynamic.onnx")]
    assert [s.exit_code for s in scores] == [0, 0], scores[0].output
    evaluated = [json.loads(s.output) for s in scores]
    assert evaluated[0]["count"] == 1000 and evaluated[0]["top1"] == evaluated[1]["top1"]
