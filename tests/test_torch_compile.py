"""The torch-compile backend: torch.compile with inductor, on the CPU here (inductor builds its CPU
kernels with a C++ compiler: g++ on this machine) and on CUDA where torch sees a GPU. A four-layer
net at 16x16 keeps each compilation to seconds."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch._dynamo.utils import counters

import foadx
from foadx.bench import bench_model, run_bench
from foadx.errors import BadInputError
from foadx.runtime import SessionOptions, TimingSettings, open_session

TINY = f"{Path(__file__).parent / 'fixtures' / 'tiny_net.py'}:tiny_net"
SHAPE = (None, 3, 16, 16)
CUDA = torch.cuda.is_available()
HAS_COMPILER = any(shutil.which(name) for name in (os.environ.get("CXX", "g++"), "g++", "clang++", "c++"))
needs_compiler = pytest.mark.skipif(not HAS_COMPILER and not CUDA,
                                    reason="inductor on the CPU needs a C++ compiler (CXX, g++ or clang++), none on PATH")


def tiny() -> torch.nn.Module:
    """The tiny net with BatchNorm statistics away from (0, 1), so running them matters."""
    torch.manual_seed(0)
    model = foadx.build_model(TINY, input_size=(16, 16))
    for layer in model.modules():
        if isinstance(layer, torch.nn.BatchNorm2d):
            layer.running_mean.uniform_(-0.5, 0.5)
            layer.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="module")
def compiled():
    model = tiny()
    return model, open_session("torch-compile", model, SessionOptions(), SHAPE)


@needs_compiler
def test_compiled_outputs_match_eager(compiled):
    model, session = compiled
    batch = np.random.default_rng(0).standard_normal((2, 3, 16, 16), dtype=np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(batch)).numpy()
    tolerance = 1e-3 if CUDA else 1e-5  # cuDNN may use TF32 for fp32 convolutions
    np.testing.assert_allclose(session.run(batch)[0], expected, atol=tolerance * np.abs(expected).max(), rtol=tolerance)
    settings = session.settings()
    assert settings["compile_mode"] == ("reduce-overhead" if CUDA else "default")
    assert set(settings["compile_s"]) >= {"1", "2"} and min(settings["compile_s"].values()) > 0


@needs_compiler
def test_no_timed_call_compiles(compiled):
    _, session = compiled
    step = session.timed_step(3)  # a new batch size: compiled here, before any timing
    assert session.settings()["compile_s"]["3"] > 0
    graphs = counters["stats"]["unique_graphs"]
    assert all(step() > 0 for _ in range(5))
    assert counters["stats"]["unique_graphs"] == graphs


@needs_compiler
def test_bench_measures_it_with_compile_time_apart():
    settings = TimingSettings(warmup_ms=10, duration_s=0.2, min_iterations=5, rounds=2)
    report = run_bench([bench_model("tiny", tiny())], ["torch-compile"], [1], settings=settings)
    (row,) = report["results"]
    assert row["backend"] == "torch-compile" and row["iterations"] >= 5 and row["median_of_rounds_ms"] > 0
    assert row["backend_settings"]["compile_s"]["1"] > 0


@pytest.mark.skipif(CUDA, reason="checks the no-GPU path")
def test_fp16_needs_a_gpu():
    with pytest.raises(BadInputError, match="torch-compile runs fp16 on a CUDA GPU only"):
        open_session("torch-compile", tiny(), SessionOptions(precision="fp16"), SHAPE)
    with pytest.raises(BadInputError, match="backend torch-compile runs fp32, fp16, not int8"):
        open_session("torch-compile", tiny(), SessionOptions(precision="int8"), SHAPE)


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_compiled_on_cuda_matches_eager_on_the_cpu(precision):
    model = tiny()
    batch = np.random.default_rng(2).standard_normal((4, 3, 16, 16), dtype=np.float32)
    expected = open_session("torch-cpu", model, input_shape=SHAPE).run(batch)[0]
    session = open_session("torch-compile", model, SessionOptions(precision=precision, channels_last=True), SHAPE)
    tolerance = 1e-3 if precision == "fp32" else 5e-2
    np.testing.assert_allclose(session.run(batch)[0], expected, atol=tolerance * np.abs(expected).max(), rtol=tolerance)
    assert session.settings()["compile_mode"] == "reduce-overhead" and session.timed_step(4)() > 0
