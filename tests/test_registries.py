"""The two registries: one ``Backend`` entry per backend (help text, export target, requirements,
profiling, width step) and one ``ReportKind`` entry per report kind with the one ``envelope``.
Real onnxruntime sessions and real exports; no mocks (a test backend is one more registry entry)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import onnx
import pytest
import torch

import foadx
from foadx.bench import bench_model, run_bench
from foadx.errors import BadInputError, FoadxError, MissingDependencyError
from foadx.export.loaders import ExportOptions
from foadx.export.metadata import metadata_of
from foadx.export.targets import TARGETS
from foadx.latency.measure import measure_network
from foadx.report import REPORT_KINDS, envelope, read_report, render_markdown
from foadx.report.html import report_figures
from foadx.report.schema import schema_for
from foadx.runtime import TimingSettings
from foadx.runtime.registry import (
    BACKENDS,
    REQUIREMENTS,
    Backend,
    backend_help,
    backend_names,
    check_available,
    check_profiling_backend,
    width_step,
)

TINY_TIMING = TimingSettings(warmup_ms=0, duration_s=0.01, min_iterations=1, rounds=1)


# --- backends ---

@pytest.mark.parametrize("profiling", [False, True])
def test_help_text_and_registry_agree_for_every_backend(profiling):
    pairs = [part.split(": ", 1) for part in backend_help(profiling=profiling).removesuffix(".").split("; ")]
    names = [name for name, entry in BACKENDS.items() if entry.profiling or not profiling]
    assert [name for name, _ in pairs] == names == list(backend_names(profiling=profiling))
    assert all(text == BACKENDS[name].description for name, text in pairs)


def test_each_backend_entry_holds_its_facts():
    assert backend_names(profiling=True) == ("ort-cpu", "openvino", "torch-cpu", "torch-cuda")
    # the lookup TARGET_OF_BACKEND held, with torch backends exporting nothing
    assert {name: entry.export_target for name, entry in BACKENDS.items()} == {
        "ort-cpu": "ort-cpu", "openvino": "openvino", "torch-cpu": None, "torch-cuda": None,
        "torch-cuda-graph": None, "torch-compile": None, "trt": "tensorrt", "trtexec": "tensorrt"}
    # 16 on CPU backends (onnxruntime NCHWc kernels), 8 on CUDA ones (fp16 tensor cores)
    assert {name: width_step(name) for name in BACKENDS} == {
        "ort-cpu": 16, "openvino": 16, "torch-cpu": 16, "torch-cuda": 8, "torch-cuda-graph": 8, "torch-compile": 8,
        "trt": 8, "trtexec": 8}
    for entry in BACKENDS.values():
        assert set(entry.requires) <= set(REQUIREMENTS)
        assert (entry.export_target is None) == (entry.loads == "torch")
        assert entry.export_target is None or entry.export_target in TARGETS


def test_unknown_and_unprofilable_backends_are_bad_input():
    with pytest.raises(BadInputError, match="give at least one backend"):
        check_available([])
    with pytest.raises(BadInputError, match="unknown backend 'tensorrtx'"):
        check_available(["ort-cpu", "tensorrtx"])
    with pytest.raises(BadInputError, match="unknown backend"):
        width_step("tensorrtx")
    for name in ("trt", "torch-cuda-graph", "tensorrtx"):
        with pytest.raises(BadInputError, match="latency profiling runs on ort-cpu, openvino, torch-cpu, torch-cuda, not"):
            check_profiling_backend(name)
    assert [entry.name for entry in check_available(["torch-cpu", "ort-cpu"])] == ["torch-cpu", "ort-cpu"]
    assert check_profiling_backend("torch-cpu") is BACKENDS["torch-cpu"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
def test_missing_requirements_are_refused_before_any_work():
    for name in ("torch-cuda", "torch-cuda-graph"):
        with pytest.raises(MissingDependencyError, match=f"backend {name} needs a CUDA GPU"):
            check_available([name])
    with pytest.raises(MissingDependencyError, match="needs a CUDA GPU"):
        check_profiling_backend("torch-cuda")
    with pytest.raises(MissingDependencyError, match="TensorRT"):
        check_available(["trt"])  # no tensorrt package, or no GPU: either says TensorRT or CUDA
    if shutil.which("trtexec") is None:
        with pytest.raises(MissingDependencyError, match="trtexec is not on PATH"):
            check_available(["trtexec"])


def test_the_registry_imports_without_torch():
    code = "import sys, foadx.runtime.registry as r; r.backend_help(); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_a_new_backend_is_one_registry_entry(monkeypatch, tmp_path):
    """onnxruntime running the OpenVINO form: bench exports that form, profiling accepts it and
    measures it, and the help lists it, with no edit but the entry."""
    name = "ort-cpu-openvino-form"
    entry = Backend(name, "onnx", "onnxruntime on OpenVINO's form", BACKENDS["ort-cpu"].opener, "openvino",
                    profiling=True)
    monkeypatch.setitem(BACKENDS, name, entry)
    assert f"{name}: onnxruntime on OpenVINO's form" in backend_help(profiling=True)
    assert check_profiling_backend(name) is entry and width_step(name) == 16
    model = foadx.build_model("resnet56_cifar").eval()
    benched = bench_model("m", model)
    path = benched.for_backend(name, tmp_path, ExportOptions(opset=17), None)
    assert metadata_of(onnx.load(str(path)))["target"] == "openvino"
    report = run_bench([benched], [name], [1], settings=TINY_TIMING)
    assert [row["backend"] for row in report["results"]] == [name]
    assert measure_network(model, name, (3, 32, 32), 1, TINY_TIMING)["median_ms"] > 0


# --- reports ---

def test_the_envelope_stamps_kind_version_and_foadx_version():
    assert envelope("foadx.parity", {"path": "m.onnx"}) == {
        "kind": "foadx.parity", "schema_version": 2, "foadx_version": foadx.__version__, "path": "m.onnx"}
    with pytest.raises(BadInputError, match="not a foadx report"):
        envelope("foadx.nothing", {})
    with pytest.raises(FoadxError, match="must not set schema_version"):
        envelope("foadx.sweep", {"schema_version": 3})


def test_schema_versions_stay_those_reports_carry():
    assert {name: kind.schema_version for name, kind in REPORT_KINDS.items()} == {
        "foadx.latency": 1, "foadx.parity": 2, "foadx.prune": 1, "foadx.eval": 1, "foadx.sweep": 1,
        "foadx.pipeline": 1, "foadx.engine": 1}
    assert schema_for("foadx.latency")["properties"]["schema_version"]["const"] == REPORT_KINDS["foadx.latency"].schema_version


def test_reports_are_read_and_rendered_through_the_registry(tmp_path):
    path = tmp_path / "r.json"
    stages = [{"stage": "prune", "status": "ran", "reason": "new", "key_figure": "foad top1 0.9", "file": "prune/",
               "record": {"seconds": 2}}]
    path.write_text(json.dumps(envelope("foadx.pipeline", {"stages": stages})))
    report = read_report(path)
    assert "| prune | ran (new) | foad top1 0.9 | prune/ |" in render_markdown(report)
    assert report_figures(report, tmp_path) == {}
    path.write_text(json.dumps({**report, "schema_version": 2}))
    with pytest.raises(BadInputError, match="schema version 2: this foadx reads versions 1 to 1"):
        read_report(path)
    path.write_text(json.dumps({"kind": "foadx.pipeline"}))  # no version (as prune and eval reports had): read as 1
    with pytest.raises(BadInputError, match="a foadx.pipeline report needs stages"):
        read_report(path)
    path.write_text(json.dumps({"kind": "foadx.unknown"}))
    with pytest.raises(BadInputError, match="is not a foadx report"):
        read_report(path)
    sidecar = envelope("foadx.engine", {"engine": "m.engine", "input": "input", "input_chw": [3, 32, 32]})
    with pytest.raises(BadInputError, match="foadx.engine reports have no Markdown rendering"):
        render_markdown(sidecar)
