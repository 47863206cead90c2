"""ONNX export: every zoo model (unpruned and FOAD-pruned) and a torchvision model round-trip
through a real file and a real onnxruntime session; metadata; opsets; the PReLU rewrite."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import foadx
from foadx.errors import BadInputError
from foadx.export import export_onnx, load_onnx, metadata_of, verify_onnx
from foadx.export.passes import rewrite_prelu

from conftest import realistic


def ort_outputs(path, batch: np.ndarray) -> np.ndarray:
    """An independent run: onnxruntime directly, not through foadx's runtime layer."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: batch})[0]


def torch_outputs(model, batch: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model(torch.from_numpy(batch)).numpy()


@pytest.fixture(scope="module")
def zoo_models(digits_112, digits_32):
    models = {}
    for spec, images in (("mobilefacenet", digits_112), ("vgg16_cifar", digits_32), ("resnet56_cifar", digits_32)):
        full = realistic(spec, images)
        pruned = foadx.prune(full, images, ratio=0.5, recalibrate_bn=True).model.eval()
        models[spec] = (full, pruned, images)
    return models


@pytest.mark.parametrize("spec", ["mobilefacenet", "vgg16_cifar", "resnet56_cifar"])
@pytest.mark.parametrize("variant", ["unpruned", "foad-pruned"])
def test_zoo_export_matches_torch(zoo_models, spec, variant, tmp_path):
    full, pruned, images = zoo_models[spec]
    model = full if variant == "unpruned" else pruned
    path = tmp_path / "model.onnx"
    result = export_onnx(model, path, verify_options={"images": images.numpy()})
    assert result.parity.passed and result.parity.checks_passed
    assert {case.batch for case in result.parity.cases} == {1, 4, 7}
    assert {case.inputs for case in result.parity.cases} == {"random", "images"}
    assert "PRelu" not in result.op_counts  # rewritten for onnxruntime (MobileFaceNet has 33)
    assert result.prelu_rewritten == (33 if spec == "mobilefacenet" else 0)
    batch = images[:5].numpy()
    expected = torch_outputs(model, batch)
    np.testing.assert_allclose(ort_outputs(path, batch), expected, rtol=1e-3, atol=1e-3 * np.abs(expected).max())
    graph = onnx.load(str(path))
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch
    assert not (tmp_path / "model.onnx.data").exists()  # one self-contained file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no temp files left


def test_torchvision_model_exports(tmp_path):
    torch.manual_seed(0)
    model = foadx.build_model("torchvision:resnet18", input_size=(64, 64)).eval()
    result = export_onnx(model, tmp_path / "resnet18.onnx")
    assert result.parity.passed
    assert result.metadata["task"] == "classify" and result.metadata["outputs"] == "logits"
    assert ort_outputs(tmp_path / "resnet18.onnx", np.zeros((2, 3, 64, 64), np.float32)).shape == (2, 1000)


def test_metadata_round_trip(realistic_mobilefacenet, digits_112, tmp_path):
    artifact = tmp_path / "pruned"
    result = foadx.prune(realistic_mobilefacenet, digits_112, ratio=0.25)
    result.save(artifact)
    reloaded = foadx.load_pruned(artifact, device="cpu")
    export_onnx(reloaded, tmp_path / "m.onnx", verify=False)
    metadata = metadata_of(onnx.load(str(tmp_path / "m.onnx")))
    assert metadata["version"] == foadx.__version__
    assert metadata["plan_digest"] == result.plan.digest()
    assert metadata["source_model"]["spec"] == "mobilefacenet"
    assert metadata["input_name"] == "input"
    assert metadata["input_shape"] == ["batch", 3, 112, 112]
    assert metadata["mean"] == [0.5, 0.5, 0.5] and metadata["std"] == [0.5, 0.5, 0.5]
    assert metadata["channel_order"] == "RGB"
    assert metadata["task"] == "face" and metadata["outputs"] == "embedding"
    assert "not L2-normalised" in metadata["output_meaning"]
    assert metadata["prelu_rewrite"] == "auto"


def test_a_pruned_model_is_refused_before_any_work(pruned_mobilefacenet, digits_112):
    with pytest.raises(foadx.errors.BadInputError, match="already pruned"):
        foadx.prune(pruned_mobilefacenet, digits_112, ratio=0.25)


def test_unpruned_model_says_so(tmp_path):
    export_onnx(foadx.build_model("resnet56_cifar"), tmp_path / "r.onnx", opset=17, verify=False)
    assert metadata_of(onnx.load(str(tmp_path / "r.onnx")))["plan_digest"] == "unpruned"


def test_prelu_rewrite_is_exact_on_real_digits(realistic_mobilefacenet, digits_112, tmp_path):
    plain = export_onnx(realistic_mobilefacenet, tmp_path / "plain.onnx", prelu_rewrite=False, verify=False)
    assert plain.op_counts["PRelu"] == 33
    batch = digits_112.numpy()
    reference = ort_outputs(tmp_path / "plain.onnx", batch)
    exported = export_onnx(realistic_mobilefacenet, tmp_path / "auto.onnx", prelu_form="auto", verify=False)
    assert "PRelu" not in exported.op_counts
    assert np.abs(ort_outputs(tmp_path / "auto.onnx", batch) - reference).max() < 1e-5
    for form in ("depthwise", "elementwise"):  # the same pass on the plain file: no second export needed
        rewritten, count = rewrite_prelu(onnx.load(str(tmp_path / "plain.onnx")), form)
        assert count == 33 and not any(node.op_type == "PRelu" for node in rewritten.graph.node)
        onnx.save(rewritten, str(tmp_path / f"{form}.onnx"))
        assert np.abs(ort_outputs(tmp_path / f"{form}.onnx", batch) - reference).max() < 1e-5


def test_prelu_rewrite_single_node_bit_exact():
    """One PRelu node against the formula, on values that hit every branch (negative, zero, positive)."""
    slope = np.array([0.25, -0.5, 1.5], dtype=np.float32).reshape(1, 3, 1, 1)
    x = np.array([-3.0, -1e-30, -0.0, 0.0, 2.5, 1e30, -7.25, 0.125], dtype=np.float32)
    x = np.broadcast_to(x, (1, 3, 1, 8)).copy() * np.array([1, -1, 2], np.float32).reshape(1, 3, 1, 1)
    node = onnx.helper.make_node("PRelu", ["x", "a"], ["y"], name="p")
    graph = onnx.helper.make_graph(
        [node], "g", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 1, 8])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3, 1, 8])],
        [onnx.numpy_helper.from_array(slope, "a")],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)])
    expected = np.where(x > 0, x, slope * x)
    for form in ("auto", "depthwise", "elementwise"):
        rewritten, count = rewrite_prelu(model, form)
        assert count == 1
        session = ort.InferenceSession(rewritten.SerializeToString(), providers=["CPUExecutionProvider"])
        np.testing.assert_array_equal(session.run(None, {"x": x})[0], expected)


def test_auto_form_chooses_depthwise_only_for_widths_of_eight():
    def prelu(name, channels):
        slope = np.linspace(0.1, 0.9, channels, dtype=np.float32).reshape(1, channels, 1, 1)
        return onnx.helper.make_node("PRelu", [f"{name}_x", f"{name}_a"], [f"{name}_y"], name=name), \
            onnx.numpy_helper.from_array(slope, f"{name}_a")

    nodes, slopes = zip(prelu("wide", 16), prelu("odd", 3))
    value = lambda name, c: onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, [1, c, 2, 2])  # noqa: E731
    graph = onnx.helper.make_graph(list(nodes), "g", [value("wide_x", 16), value("odd_x", 3)],
                                   [value("wide_y", 16), value("odd_y", 3)], list(slopes))
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)])
    rewritten, count = rewrite_prelu(model, "auto")
    ops = sorted(node.op_type for node in rewritten.graph.node)
    assert count == 2
    assert ops.count("Conv") == 2 and ops.count("Neg") == 1  # 16 channels: depthwise; 3: elementwise


@pytest.mark.parametrize("opset, exporter", [(13, "legacy"), (17, "legacy"), (18, "dynamo")])
def test_opset_is_exactly_what_was_asked(opset, exporter, tmp_path):
    model = foadx.build_model("resnet56_cifar")
    result = export_onnx(model, tmp_path / "r.onnx", opset=opset)
    written = onnx.load(str(tmp_path / "r.onnx"))
    assert result.exporter == exporter
    assert [entry.version for entry in written.opset_import if entry.domain == ""] == [opset]
    assert result.parity.passed


def test_fixed_batch_and_strict_deployability(tmp_path):
    model = foadx.build_model("resnet56_cifar")
    result = export_onnx(model, tmp_path / "r.onnx", batch=3)
    dims = [d.dim_value for d in onnx.load(str(tmp_path / "r.onnx")).graph.input[0].type.tensor_type.shape.dim]
    assert dims == [3, 3, 32, 32]
    assert [case.batch for case in result.parity.cases] == [3]
    dynamic = {check.name: check.passed for check in result.parity.checks}["dynamic batch"]
    assert dynamic is False and result.parity.passed  # reported, not failing
    strict = verify_onnx(tmp_path / "r.onnx", model, strict=True)
    assert strict.parity_passed and not strict.passed


def test_planted_mismatch_fails_verification(pruned_mobilefacenet, tmp_path):
    export_onnx(pruned_mobilefacenet, tmp_path / "m.onnx")
    import copy

    tampered = copy.deepcopy(pruned_mobilefacenet)
    with torch.no_grad():
        tampered.blocks[3].project.conv.weight[0, 0] += 0.5
    report = verify_onnx(tmp_path / "m.onnx", tampered)
    assert not report.passed
    assert report.worst()["smallest_passing_atol"] > 1e-3


def test_failed_parity_never_replaces_a_good_file(pruned_mobilefacenet, tmp_path):
    target = tmp_path / "m.onnx"
    target.write_bytes(b"the good file")
    with pytest.raises(foadx.errors.CheckFailedError, match="would pass with atol>="):
        export_onnx(pruned_mobilefacenet, target, verify_options={"atol": 0.0, "rtol": 0.0})
    assert target.read_bytes() == b"the good file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_bad_onnx_files_are_refused(tmp_path):
    export_onnx(foadx.build_model("resnet56_cifar"), tmp_path / "good.onnx", opset=17, verify=False)
    data = (tmp_path / "good.onnx").read_bytes()
    (tmp_path / "truncated.onnx").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.onnx").write_bytes(b"\x00\xffnot a protobuf" * 10)
    (tmp_path / "empty.onnx").write_bytes(b"")
    for name in ("truncated.onnx", "garbage.onnx", "empty.onnx", "missing.onnx"):
        with pytest.raises(BadInputError, match="ONNX"):
            load_onnx(tmp_path / name)


def test_outputs_of_another_model_are_refused(tmp_path):
    export_onnx(foadx.build_model("mobilefacenet"), tmp_path / "m.onnx", opset=17, verify=False)
    with pytest.raises(BadInputError, match="not the same model"):
        verify_onnx(tmp_path / "m.onnx", foadx.build_model("mobilefacenet", embedding_size=64))


def test_bad_export_options(tmp_path):
    model = foadx.build_model("resnet56_cifar")
    with pytest.raises(BadInputError, match="opset"):
        export_onnx(model, tmp_path / "r.onnx", opset=5)
    with pytest.raises(BadInputError, match="batch"):
        export_onnx(model, tmp_path / "r.onnx", batch=0)
    with pytest.raises(BadInputError, match="folder does not exist"):
        export_onnx(model, tmp_path / "missing" / "r.onnx")
    with pytest.raises(BadInputError, match="form"):
        export_onnx(model, tmp_path / "r.onnx", prelu_form="fast")
