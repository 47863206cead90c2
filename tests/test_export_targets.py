"""Per-target export forms (recorded in the metadata), the insightface target's checks and its
model-package manifest, read back by insightface itself when it is installed."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import numpy as np
import onnx
import onnx.helper as oh
import pytest

from foadx.export.checks import insightface_checks
from foadx.export.metadata import metadata_of
from foadx.export.targets import TARGETS
from tests.cli_helpers import error_line, run


def ops(path) -> Counter:
    return Counter(node.op_type for node in onnx.load(str(path)).graph.node)


@pytest.fixture(scope="module")
def face_artifact(tmp_path_factory):
    """A MobileFaceNet with trained (non-trivial) weights: 2 epochs of ArcFace on the digits."""
    folder = tmp_path_factory.mktemp("targets")
    result = run("finetune", "mobilefacenet", "--task", "face", "--data", "demo", "--epochs", "1",
                 "--steps-per-epoch", "8", "--batch-size", "16", "--out", folder / "face", "--quiet")
    assert result.exit_code == 0, result.output
    return folder / "face"


@pytest.fixture(scope="module")
def small_face(tmp_path_factory):
    """The same at 32x32: the forms do not depend on size, and small exports keep the suite fast."""
    folder = tmp_path_factory.mktemp("targets-small")
    result = run("finetune", "mobilefacenet", "--input-size", "32", "--task", "face", "--data", "demo", "--epochs", "1",
                 "--steps-per-epoch", "4", "--batch-size", "16", "--out", folder / "face", "--quiet")
    assert result.exit_code == 0, result.output
    return folder / "face"


@pytest.mark.parametrize("target, rewritten, batch", [
    ("ort-cpu", True, "batch"), ("openvino", False, "batch"), ("tensorrt", False, "batch"),
    ("mobile", False, 1), ("insightface", True, "batch"),
])
def test_each_target_has_its_form_recorded(face_artifact, small_face, tmp_path, target, rewritten, batch):
    out = tmp_path / f"{target}.onnx"
    model = face_artifact if target == "insightface" else small_face  # insightface takes 112x112 only
    result = run("export", model, "--target", target, "--out", out, "--quiet", "--no-verify")
    assert result.exit_code == 0, result.output
    metadata = metadata_of(onnx.load(str(out)))
    assert metadata["target"] == target and metadata["input_shape"][0] == batch
    assert (metadata["prelu_rewrite"] != "none") == rewritten
    assert ("PRelu" in ops(out)) != rewritten
    assert (TARGETS[target].prelu_rewrite, TARGETS[target].batch) == (rewritten, 1 if batch == 1 else "dynamic")


def test_an_explicit_option_overrides_the_target(small_face, tmp_path):
    result = run("export", small_face, "--target", "mobile", "--batch", "4", "--prelu-rewrite",
                 "--out", tmp_path / "m.onnx", "--quiet", "--no-verify")
    assert result.exit_code == 0, result.output
    metadata = metadata_of(onnx.load(str(tmp_path / "m.onnx")))
    assert metadata["input_shape"][0] == 4 and metadata["prelu_rewrite"] != "none"


def nnapi_nodes(path) -> str:
    """onnxruntime's own mobile usability check: 'N/M nodes can be handled by the NNAPI EP'."""
    output = subprocess.run([sys.executable, "-m", "onnxruntime.tools.check_onnx_model_mobile_usability", str(path)],
                            capture_output=True, text=True).stderr
    return next(line for line in output.splitlines() if "can be handled by the NNAPI EP" in line).split("total of ")[1].split()[0]


def test_the_mobile_form_is_what_nnapi_can_take(small_face, tmp_path):
    run("export", small_face, "--target", "mobile", "--out", tmp_path / "mobile.onnx", "--quiet", "--no-verify")
    run("export", small_face, "--target", "openvino", "--out", tmp_path / "dynamic.onnx", "--quiet", "--no-verify")
    handled, total = map(int, nnapi_nodes(tmp_path / "mobile.onnx").split("/"))
    assert handled == total > 0
    assert nnapi_nodes(tmp_path / "dynamic.onnx").startswith("0/")


def test_insightface_refuses_what_its_loader_would_misread(tmp_path):
    result = run("export", "resnet56_cifar", "--target", "insightface", "--out", tmp_path / "c.onnx", "--quiet")
    assert result.exit_code == 3
    line = error_line(result)
    assert "not exportable for insightface" in line and "side >= 112, divisible by 16 (side 32)" in line
    assert "normalisation (x - 127.5) / 127.5" in line
    assert not (tmp_path / "c.onnx").exists() and not (tmp_path / "manifest.json").exists()
    result = run("export", "mobilefacenet", "--input-size", "112x96", "--target", "insightface",
                 "--out", tmp_path / "r.onnx", "--quiet")
    assert result.exit_code == 3 and "square input (input 112x96)" in error_line(result)


def test_node_names_that_insightface_reads_as_in_graph_normalisation():
    nodes = [oh.make_node("Sub", ["x", "m"], ["a"], name="Sub_0"), oh.make_node("Mul", ["a", "s"], ["y"], name="Mul_1")]
    graph = oh.make_graph(nodes, "g", [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 3, 112, 112])],
                          [oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 3, 112, 112])],
                          [oh.make_tensor("m", onnx.TensorProto.FLOAT, [], [127.5]),
                           oh.make_tensor("s", onnx.TensorProto.FLOAT, [], [1 / 127.5])])
    checks = {check.name: check for check in insightface_checks(oh.make_model(graph), {"mean": [0.5] * 3, "std": [0.5] * 3,
                                                                                       "channel_order": "RGB"})}
    assert not checks["no Sub/Mul node names in the first 8 nodes"].passed
    assert not checks["2-D output"].passed and checks["square input"].passed


def test_insightface_package(face_artifact, tmp_path):
    result = run("export", face_artifact, "--target", "insightface", "--out", tmp_path / "pkg" / "mfn.onnx", "--json")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "pkg" / "manifest.json").read_text())
    recognition = manifest["tasks"]["recognition"]
    assert manifest["manifest_version"] == 2 and manifest["license"] == "MODEL.LICENSE"
    assert recognition["file"] == "mfn.onnx" and recognition["input_size"] == [112, 112]
    assert recognition["embedding_dimension"] == 128
    assert recognition["preprocessing"] == {"mean": 127.5, "std": 127.5}
    import hashlib
    assert recognition["sha256"] == hashlib.sha256((tmp_path / "pkg" / "mfn.onnx").read_bytes()).hexdigest()
    assert (tmp_path / "pkg" / "MODEL.LICENSE").read_text().startswith("mfn.onnx: mobilefacenet")
    assert json.loads(result.output)["insightface_manifest"] == manifest


def test_a_manifest_foadx_did_not_write_is_kept(face_artifact, tmp_path):
    (tmp_path / "manifest.json").write_text('{"manifest_version": 2, "model_id": "theirs"}')
    result = run("export", face_artifact, "--target", "insightface", "--out", tmp_path / "m.onnx", "--quiet")
    assert result.exit_code == 3 and "foadx did not write it" in error_line(result)
    assert json.loads((tmp_path / "manifest.json").read_text())["model_id"] == "theirs"


def test_insightface_loads_the_package_and_agrees_with_onnxruntime(face_artifact, tmp_path):
    model_zoo = pytest.importorskip("insightface.model_zoo")
    from foadx.runtime import open_session

    run("export", face_artifact, "--target", "insightface", "--out", tmp_path / "pkg" / "mfn.onnx", "--quiet")
    rgb = np.random.default_rng(0).integers(0, 256, (4, 112, 112, 3), dtype=np.uint8)
    reference = open_session("ort-cpu", tmp_path / "pkg" / "mfn.onnx").run(
        ((rgb.astype(np.float32) / 255 - 0.5) / 0.5).transpose(0, 3, 1, 2))[0]
    bgr = [image[..., ::-1].copy() for image in rgb]  # insightface takes OpenCV's BGR images
    for loaded in (model_zoo.get_model(str(tmp_path / "pkg"), model_task="recognition"),  # through the manifest
                   model_zoo.get_model(str(tmp_path / "pkg" / "mfn.onnx"))):  # the legacy name-based guess
        assert (loaded.input_mean, loaded.input_std, loaded.input_size) == (127.5, 127.5, (112, 112))
        embeddings = loaded.get_feat(bgr)
        assert embeddings.shape == reference.shape == (4, 128)
        rms = np.sqrt(np.mean(reference ** 2))
        assert np.abs(embeddings - reference).max() / rms < 1e-4
