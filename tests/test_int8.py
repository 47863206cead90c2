"""Honest int8: calibrated on some images, checked on held-out ones per sample, refused below the
floor (exit 4, nothing written), in the form each target runs, with the usual remedies."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from foadx.errors import BadInputError
from foadx.export.quantize import Int8CheckFailedError, Int8Options, fp32_node_names, quantize_int8, split_images
from tests.cli_helpers import error_line, run


def zero_point_types(path) -> set[int]:
    model = onnx.load(str(path))
    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    return {initializers[node.input[2]].data_type for node in model.graph.node
            if node.op_type == "QuantizeLinear" and len(node.input) > 2 and node.input[2] in initializers}


def dequantized_inputs(path, op="Conv") -> list[bool]:
    """Per Conv node, in order: does its input come from a DequantizeLinear (is it int8)?"""
    model = onnx.load(str(path))
    producers = {output: node.op_type for node in model.graph.node for output in node.output}
    return [producers.get(node.input[0]) == "DequantizeLinear" for node in model.graph.node if node.op_type == op]


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    folder = tmp_path_factory.mktemp("int8")
    for target in ("ort-cpu", "openvino"):
        result = run("export", "resnet56_cifar", "--target", target, "--out", folder / f"{target}.onnx", "--quiet")
        assert result.exit_code == 0, result.output
    return folder


@pytest.fixture(scope="module")
def images():
    from foadx.data.calibration import calibration_images

    loaded = calibration_images("demo", 48, (32, 32), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
    return np.concatenate([batch.numpy() for batch in loaded])


def test_the_held_out_split():
    calibration, held_out = split_images(np.zeros((256, 3, 4, 4)))
    assert (len(calibration), len(held_out)) == (192, 64)
    calibration, held_out = split_images(np.zeros((20, 3, 4, 4)))
    assert (len(calibration), len(held_out)) == (12, 8)  # at least 8 held out
    with pytest.raises(BadInputError, match="at least 16"):
        split_images(np.zeros((15, 3, 4, 4)))


def test_each_target_gets_its_form_and_a_per_sample_report(fp32, images, tmp_path):
    ort = quantize_int8(fp32 / "ort-cpu.onnx", tmp_path / "o.int8.onnx", images, target="ort-cpu",
                        options=Int8Options(min_cosine=0.5))
    assert zero_point_types(tmp_path / "o.int8.onnx") == {onnx.TensorProto.UINT8}
    check = ort["vs_fp32"]
    assert check["held_out_images"] == 12 and ort["calibration_images"] == 36
    assert -1 <= check["min_sample_cosine"] <= check["mean_sample_cosine"] <= 1
    assert check["task_agreement_pct"] is not None and check["checked_on"] == "ort-cpu"
    trt = quantize_int8(fp32 / "openvino.onnx", tmp_path / "t.int8.onnx", images, target="tensorrt",
                        options=Int8Options(min_cosine=0.5))
    assert zero_point_types(tmp_path / "t.int8.onnx") == {onnx.TensorProto.INT8}  # symmetric, as TensorRT requires
    assert trt["form"] == {"quant_format": "QDQ", "activations": "int8", "checked_on": "ort-cpu"}
    metadata = {prop.key: prop.value for prop in onnx.load(str(tmp_path / "t.int8.onnx")).metadata_props}
    assert metadata["foadx.precision"] == "int8" and metadata["foadx.calibration_images"] == "36"


def test_below_the_floor_nothing_is_written(fp32, images, tmp_path):
    with pytest.raises(Int8CheckFailedError, match=r"min per-sample cosine 0\.\d+ < 0\.999999.*not written") as failure:
        quantize_int8(fp32 / "ort-cpu.onnx", tmp_path / "o.int8.onnx", images, target="ort-cpu",
                      options=Int8Options(min_cosine=0.999999))
    assert not (tmp_path / "o.int8.onnx").exists()
    assert failure.value.report["vs_fp32"]["passed"] is False
    assert list(tmp_path.iterdir()) == []  # no temporary left either


def test_the_first_and_last_layers_can_stay_fp32(fp32, images, tmp_path):
    model = onnx.load(str(fp32 / "ort-cpu.onnx"))
    convs = [node.name for node in model.graph.node if node.op_type in ("Conv", "Gemm", "MatMul")]
    assert fp32_node_names(model, ("first", "last")) == [convs[0], convs[-1]]
    with pytest.raises(BadInputError, match="no node named 'nope'"):
        fp32_node_names(model, ("nope",))
    report = quantize_int8(fp32 / "ort-cpu.onnx", tmp_path / "k.int8.onnx", images, target="ort-cpu",
                           options=Int8Options(fp32_layers=("first",), min_cosine=0.5))
    quantized = dequantized_inputs(tmp_path / "k.int8.onnx")
    assert quantized[0] is False and all(quantized[1:])
    assert report["fp32_layers"] == [convs[0]]


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_other_calibration_methods(fp32, images, tmp_path, method):
    report = quantize_int8(fp32 / "openvino.onnx", tmp_path / "m.int8.onnx", images, target="tensorrt",
                           options=Int8Options(method=method, min_cosine=0.5))
    assert report["method"] == method and (tmp_path / "m.int8.onnx").exists()


def test_cli_exit_4_below_the_floor_and_the_fp32_file_is_kept(tmp_path):
    result = run("export", "resnet56_cifar", "--out", tmp_path / "r.onnx", "--precision", "int8", "--calib-images", "32",
                 "--min-cosine", "0.999999")
    assert result.exit_code == 4 and "int8 check failed on 8 held-out images" in error_line(result)
    assert (tmp_path / "r.onnx").exists() and not (tmp_path / "r.int8.onnx").exists()
    ok = run("export", "resnet56_cifar", "--out", tmp_path / "r.onnx", "--precision", "int8", "--calib-images", "32",
             "--min-cosine", "0.5", "--int8-fp32-layers", "first,last", "--calib-method", "percentile", "--json", "--quiet")
    assert ok.exit_code == 0, ok.output
    int8 = json.loads(ok.output)["int8"]
    assert int8["method"] == "percentile" and len(int8["fp32_layers"]) == 2 and int8["vs_fp32"]["min_cosine"] == 0.5
    bad = run("export", "resnet56_cifar", "--out", tmp_path / "r.onnx", "--precision", "int8", "--calib-method", "kl")
    assert bad.exit_code == 3 and "--calib-method must be one of" in error_line(bad)


def test_openvino_runs_its_int8_file(fp32, images, tmp_path):
    pytest.importorskip("openvino")
    report = quantize_int8(fp32 / "openvino.onnx", tmp_path / "v.int8.onnx", images, target="openvino",
                           options=Int8Options(min_cosine=0.5))
    assert report["vs_fp32"]["checked_on"] == "openvino"
    assert zero_point_types(tmp_path / "v.int8.onnx") == {onnx.TensorProto.INT8}
