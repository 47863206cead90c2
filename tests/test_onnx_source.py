"""ONNX-only models as a pruning source (issue 24): files written the way insightface's export
script writes them (legacy exporter, ``input_names=["data"]``, ``keep_initializers_as_inputs=False``,
opset 11-13, fixed or dynamic batch) and the way ``foadx export`` writes them (dynamo, opset 18,
PReLU rewritten), imported, proven equal to the file in onnxruntime, pruned, exported, verified."""

from __future__ import annotations

import json
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

import foadx
from foadx.export import export_onnx
from foadx.models.onnx_import import PIXEL_STD, onnx_contract
from foadx.provenance import provenance_of
from foadx.resolve import resolve_model
from foadx.runtime.parity import Tolerances, compare_output
from tests.cli_helpers import error_line, run
from tests.conftest import realistic


def write_like_insightface(net: nn.Module, path, opset: int, dynamic: bool) -> None:
    """insightface's recognition export: torch.onnx.export with the legacy (TorchScript) exporter."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, torch.zeros(1, 3, 112, 112), str(path), input_names=["data"],
                          keep_initializers_as_inputs=False, opset_version=opset, dynamo=False,
                          dynamic_axes={"data": {0: "batch"}} if dynamic else None)


@pytest.fixture(scope="module")
def mbf_files(tmp_path_factory, digits_112):
    """mbf (insightface's MobileFaceNet) with BN statistics from real digits, written three ways."""
    folder = tmp_path_factory.mktemp("mbf")
    net = realistic("mbf", digits_112)
    with torch.no_grad():  # distinct slopes per channel, so a slope applied to the wrong channel shows
        for prelu in (m for m in net.modules() if isinstance(m, nn.PReLU)):
            prelu.weight.uniform_(0.05, 0.5)
    files = {"legacy-11-fixed": folder / "mbf_11.onnx", "legacy-13-dynamic": folder / "mbf_13.onnx",
             "foadx-dynamo-18": folder / "mbf_dynamo.onnx"}
    write_like_insightface(net, files["legacy-11-fixed"], 11, dynamic=False)
    write_like_insightface(net, files["legacy-13-dynamic"], 13, dynamic=True)
    export_onnx(net, files["foadx-dynamo-18"], verify=False)
    return net, files


class TinyFace(nn.Module):
    """arcface_torch's layout at 3x32x32: conv-BN-PReLU twice, flatten, Linear, BN1d embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.PReLU(16),
                                  nn.Conv2d(16, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.PReLU(32))
        self.fc = nn.Linear(32 * 8 * 8, 16)
        self.features = nn.BatchNorm1d(16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.fc(self.body(x).flatten(1)))


class MatMulHead(nn.Module):
    """A head written as ``x @ W + b`` (the legacy exporter writes MatMul + Add, not Gemm)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, 2, 1)
        self.weight = nn.Parameter(torch.randn(8 * 16 * 16, 10) * 0.05)
        self.bias = nn.Parameter(torch.randn(10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x)).flatten(1) @ self.weight + self.bias


def randomised(net: nn.Module) -> nn.Module:
    """Non-trivial BN statistics and PReLU slopes, seeded; eval mode."""
    torch.manual_seed(0)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
            if isinstance(module, nn.PReLU):
                module.weight.uniform_(0.05, 0.5)
    return net.eval()


def write_small(net: nn.Module, path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, torch.zeros(1, 3, 32, 32), str(path), input_names=["data"],
                          keep_initializers_as_inputs=False, opset_version=13, dynamo=False,
                          dynamic_axes={"data": {0: "batch"}})


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    """TinyFace written by the legacy exporter (opset 13, dynamic batch) and by ``foadx export``'s
    default (dynamo, opset 18, PReLU rewritten, BN folded)."""
    folder = tmp_path_factory.mktemp("tiny")
    net = randomised(TinyFace())
    files = {"legacy": folder / "tiny.onnx", "dynamo": folder / "tiny_dynamo.onnx"}
    write_small(net, files["legacy"])
    export_onnx(net, files["dynamo"], input_size=(32, 32), input_channels=3, verify=False)
    return net, files


def ort_outputs(path, images: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: images})[0]


@pytest.mark.parametrize("form", ["legacy-11-fixed", "legacy-13-dynamic", "foadx-dynamo-18"])
def test_import_matches_the_file_in_onnxruntime(mbf_files, digits_112, form):
    net, files = mbf_files
    ref = resolve_model(str(files[form]))
    module = ref.module()
    kinds = [type(m).__name__ for m in module.modules()]
    assert kinds.count("PReLU") == 33 and kinds.count("Linear") == 1 and kinds.count("Conv2d") == 49
    assert not [kind for kind in kinds if kind.startswith("Onnx") and kind != "OnnxBinaryMathOperation"]
    images = digits_112[:1] if form == "legacy-11-fixed" else digits_112[:5]
    with torch.no_grad():
        imported = module(images).numpy()
        source = net(images).numpy()
    reference = ort_outputs(files[form], images.numpy())
    assert compare_output("embedding", imported, reference, Tolerances()).passed
    assert compare_output("embedding", imported, source, Tolerances()).passed
    assert np.abs(reference).max() > 0.1  # realistic magnitudes, not a trivially small output


def test_import_records_the_file_and_its_contract(mbf_files):
    _, files = mbf_files
    path = files["legacy-13-dynamic"].resolve()
    provenance = provenance_of(resolve_model(str(path)).module())
    digest = __import__("hashlib").sha256(path.read_bytes()).hexdigest()
    assert provenance.source.spec == str(path) and provenance.source.kwargs == {"sha256": digest}
    assert provenance.source.mean == (0.5,) * 3 and provenance.source.std == (0.5,) * 3  # (x - 127.5) / 127.5
    assert provenance.task == "face" and provenance.plan.weights_origin == f"loaded from {path}"


def test_small_model_prune_export_verify(tiny_files, tmp_path):
    source, artifact, pruned = tiny_files[1]["legacy"], tmp_path / "art", tmp_path / "pruned.onnx"
    assert run("prune", source, "--data", "demo", "--images", "8", "--batch-size", "8", "--ratio", "0.5",
               "--out", artifact, "-q").exit_code == 0
    plan = json.loads((artifact / "plan.json").read_text())
    assert [(group["channels"], len(group["kept"])) for group in plan["groups"]] == [(16, 8), (32, 16)]
    assert run("export", artifact, "--out", pruned, "-q").exit_code == 0
    verified = run("verify", pruned, "--against", artifact, "-q")
    assert verified.exit_code == 0, verified.output
    weights = {name: tuple(tensor.shape) for name, tensor in foadx.load_pruned(artifact).state_dict().items()}
    assert (16, 16 * 8 * 8) in weights.values()  # the Linear lost the inputs of the 16 cut channels


def test_matmul_plus_constant_becomes_linear(tmp_path):
    net, path = MatMulHead().eval(), tmp_path / "matmul.onnx"
    write_small(net, path)
    assert [node.op_type for node in onnx.load(str(path)).graph.node][-2:] == ["MatMul", "Add"]
    module = resolve_model(str(path)).module()
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 1 and linears[0].bias is not None
    assert torch.equal(linears[0].weight, net.weight.detach().t()) and torch.equal(linears[0].bias, net.bias.detach())
    images = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        assert compare_output("logits", module(images).numpy(), ort_outputs(path, images.numpy())).passed


@pytest.mark.slow
def test_prune_export_verify_round_trip_and_reload(mbf_files, tmp_path):
    _, files = mbf_files
    source = files["legacy-13-dynamic"]
    artifact, pruned = tmp_path / "art", tmp_path / "pruned.onnx"
    result = run("prune", source, "--data", "demo", "--images", "8", "--batch-size", "8", "--ratio", "0.5",
                 "--out", artifact, "-q")
    assert result.exit_code == 0, result.output
    plan = json.loads((artifact / "plan.json").read_text())
    assert plan["model"]["spec"] == str(source.resolve()) and len(plan["model"]["kwargs"]["sha256"]) == 64
    widths = {group["name"]: (group["channels"], len(group["kept"])) for group in plan["groups"]}
    assert widths["conv_sep/layers/layers/0/Conv"] == (512, 256)  # ratio 0.5: 512 - floor(0.5 * 512)
    assert run("export", artifact, "--out", pruned, "-q").exit_code == 0
    verified = run("verify", pruned, "--against", artifact, "-q")
    assert verified.exit_code == 0, verified.output
    reloaded = foadx.load_pruned(artifact)  # re-imports the recorded file, cuts it to the plan
    images = torch.rand(3, 3, 112, 112)
    with torch.no_grad():
        assert compare_output("embedding", reloaded(images).numpy(), ort_outputs(pruned, images.numpy())).passed
    original = source.read_bytes()
    edited = onnx.load(str(source))
    edited.doc_string = "edited after pruning"  # still a valid file, no longer the one the plan names
    onnx.save(edited, str(source))
    try:
        changed = run("export", artifact, "--out", tmp_path / "again.onnx")
        assert changed.exit_code == 3 and "has changed since the plan recorded it" in error_line(changed)
    finally:
        source.write_bytes(original)


def test_a_file_verifies_against_another_files_import(tiny_files):
    net, files = tiny_files
    result = run("verify", files["dynamo"], "--against", files["legacy"], "-q")
    assert result.exit_code == 0, result.output  # same network: the dynamo file against the legacy file's import
    kinds = [type(m).__name__ for m in resolve_model(str(files["dynamo"])).module().modules()]
    assert kinds.count("PReLU") == 2 and "BatchNorm2d" not in kinds  # foadx's PReLU rewrite undone; BN folded
    images = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert compare_output("embedding", resolve_model(str(files["dynamo"])).module()(images).numpy(),
                              net(images).numpy()).passed


@pytest.mark.slow
def test_mbf_file_verifies_against_its_own_import(mbf_files):
    _, files = mbf_files
    result = run("verify", files["foadx-dynamo-18"], "--against", files["legacy-13-dynamic"], "-q")
    assert result.exit_code == 0, result.output


def test_finetune_an_onnx_source_a_few_steps(tiny_files, tmp_path):
    _, files = tiny_files
    result = run("finetune", files["dynamo"], "--data", "demo", "--epochs", "1", "--steps-per-epoch", "2",
                 "--batch-size", "8", "--out", tmp_path / "ft", "-q")
    assert result.exit_code == 0, result.output
    plan = json.loads((tmp_path / "ft" / "plan.json").read_text())
    assert plan["finetune"]["config"]["task"] == "classify"  # the demo digits' task, as for any model
    assert plan["model"]["spec"] == str(files["dynamo"].resolve())
    tuned = foadx.load_pruned(tmp_path / "ft")
    assert sum(isinstance(m, nn.Conv2d) and m.bias is not None for m in tuned.modules()) == 2  # BN folded: biases


def test_recalibrate_bn_is_refused_without_batchnorm(tiny_files, tmp_path):
    _, files = tiny_files  # the dynamo export folds every BN (the embedding BN1d into the Gemm as well)
    result = run("prune", files["dynamo"], "--data", "demo", "--images", "8", "--ratio", "0.5",
                 "--recalibrate-bn", "--out", tmp_path / "art")
    assert result.exit_code == 3 and "no BatchNorm layer to recalibrate" in error_line(result)


def _tiny_graph(tmp_path, ops: list[str], size: int = 8, first: tuple[str, ...] = ()) -> str:
    """A 3 x size x size graph: optional leading elementwise ops, a Conv, then ``ops`` in a chain."""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 1, 1], np.ones(12, dtype=np.float32).tolist())
    scalar = helper.make_tensor("k", TensorProto.FLOAT, [], [2.0])
    nodes, last = [], "data"
    for index, op in enumerate(first):
        nodes.append(helper.make_node(op, [last, "k"], [f"pre{index}"], name=f"{op}_{index}"))
        last = f"pre{index}"
    nodes.append(helper.make_node("Conv", [last, "w"], ["c0"], name="conv"))
    last = "c0"
    for index, op in enumerate(ops):
        nodes.append(helper.make_node(op, [last], [f"o{index}"], name=f"{op.lower()}_{index}"))
        last = f"o{index}"
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, size, size])],
                              [helper.make_tensor_value_info(last, TensorProto.FLOAT, [1, 4, size, size])], [weight, scalar])
    path = tmp_path / f"tiny_{'_'.join(ops) or 'conv'}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return str(path)


def test_operators_onnx2torch_cannot_import_are_all_named(tmp_path):
    path = _tiny_graph(tmp_path, ["Hardmax", "Relu", "LpNormalization"])
    result = run("prune", path, "--data", "demo", "--ratio", "0.5", "--out", tmp_path / "art")
    assert result.exit_code == 3
    assert "cannot import the operator(s) Hardmax, LpNormalization (opset 13)" in error_line(result)


@pytest.mark.parametrize("damage", ["truncated", "not-onnx"])
def test_a_corrupt_onnx_file_is_refused(mbf_files, tmp_path, damage):
    _, files = mbf_files
    path = tmp_path / "broken.onnx"
    data = files["legacy-11-fixed"].read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"plain text, not protobuf" * 10)
    result = run("prune", path, "--data", "demo", "--ratio", "0.5", "--out", tmp_path / "art")
    assert result.exit_code == 3 and "is not a valid ONNX model" in error_line(result)


def test_insightface_normalisation_rule(tmp_path):
    plain = onnx_contract(onnx.load(_tiny_graph(tmp_path, [], size=112)), "plain")
    assert (plain.mean, plain.std, plain.task) == ((0.5,) * 3, (0.5,) * 3, "unknown")  # a 4-D output: no embedding
    assert "not a 112x112 model with one 2-D embedding output" in plain.assumed
    own = onnx_contract(onnx.load(_tiny_graph(tmp_path, ["Relu"], size=112, first=("Sub", "Mul"))), "self")
    assert own.mean == (0.0,) * 3 and own.std == (PIXEL_STD,) * 3  # fed raw 0..255 pixels, as insightface does
    assert "raw 0..255 pixels" in own.assumed


def test_foadx_metadata_wins_over_the_rule(mbf_files):
    _, files = mbf_files
    contract = onnx_contract(onnx.load(str(files["foadx-dynamo-18"])), "own")
    assert contract.assumed is None and contract.task == "face" and contract.mean == (0.5, 0.5, 0.5)


def test_build_options_and_factory_arguments_are_refused(mbf_files):
    _, files = mbf_files
    result = run("prune", files["legacy-11-fixed"], "--data", "demo", "--ratio", "0.5", "--model-arg", "x=1",
                 "--out", "unused")
    assert result.exit_code == 3 and "do not apply to" in error_line(result)
    assert "it is an ONNX file, built already" in error_line(result)
    with pytest.raises(foadx.errors.UnknownModelError, match="takes no factory arguments"):
        foadx.build_model(str(files["legacy-11-fixed"]), embedding_size=4)


def test_iresnet18_legacy_import_matches_the_file(tmp_path, digits_112):
    """IResNet keeps its pre-activation BNs as BatchNormalization nodes (no conv precedes them)."""
    net = realistic("iresnet18", digits_112)
    path = tmp_path / "r18.onnx"
    write_like_insightface(net, path, 12, dynamic=True)
    module = resolve_model(str(path)).module()
    assert sum(isinstance(m, nn.BatchNorm2d) for m in module.modules()) > 0
    with torch.no_grad():
        imported = module(digits_112[:2]).numpy()
    assert compare_output("embedding", imported, ort_outputs(path, digits_112[:2].numpy()), Tolerances()).passed


@pytest.mark.slow
@pytest.mark.parametrize("opset,dynamic", [(11, False), (13, True)])
def test_iresnet50_round_trip(tmp_path, digits_112, opset, dynamic):
    net = realistic("iresnet50", digits_112)
    source, artifact, pruned = tmp_path / "r50.onnx", tmp_path / "art", tmp_path / "pruned.onnx"
    write_like_insightface(net, source, opset, dynamic)
    module = resolve_model(str(source)).module()
    images = digits_112[:1]
    with torch.no_grad():
        assert compare_output("embedding", module(images).numpy(), ort_outputs(source, images.numpy())).passed
    assert run("prune", source, "--data", "demo", "--images", "8", "--batch-size", "8", "--ratio", "0.3",
               "--out", artifact, "-q").exit_code == 0
    assert run("export", artifact, "--out", pruned, "--target", "insightface", "-q").exit_code == 0
    assert run("verify", pruned, "--against", artifact, "-q").exit_code == 0


@pytest.mark.slow
def test_profile_and_latency_target_on_an_onnx_source(tiny_files, tmp_path):
    _, files = tiny_files
    table, artifact = tmp_path / "lut.json", tmp_path / "art"
    assert run("profile", files["legacy"], "--backend", "ort-cpu", "--out", table, "-q").exit_code == 0
    result = run("prune", files["legacy"], "--data", "demo", "--images", "8", "--latency-target", "1.001x",
                 "--backend", "ort-cpu", "--lut", table, "--out", artifact, "-q")
    assert result.exit_code == 0, result.output
    plan = json.loads((artifact / "plan.json").read_text())
    assert plan["model"]["spec"] == str(files["legacy"].resolve()) and plan["groups"]


def test_an_artifact_moved_with_its_onnx_source_still_loads(tiny_files, tmp_path):
    """The plan records the ONNX file's absolute path; moved away from it, the artifact finds the
    same file (by name, checked by sha256) in its folder or beside it, and says where to put it when
    it is in neither."""
    import shutil

    _, files = tiny_files
    source = tmp_path / "here" / "tiny.onnx"
    source.parent.mkdir()
    shutil.copy(files["legacy"], source)
    result = run("prune", source, "--data", "demo", "--images", "8", "--ratio", "0.5", "--out", tmp_path / "here" / "art", "-q")
    assert result.exit_code == 0, result.output
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        expected = foadx.load_pruned(tmp_path / "here" / "art")(images)
    shutil.move(tmp_path / "here", tmp_path / "there")  # artifact and source moved together
    moved = foadx.load_pruned(tmp_path / "there" / "art")
    with torch.no_grad():
        assert torch.equal(moved(images), expected)
    assert foadx.provenance_of(moved).source.spec == str((tmp_path / "there" / "tiny.onnx").resolve())
    (tmp_path / "there" / "tiny.onnx").rename(tmp_path / "there" / "art" / "tiny.onnx")  # inside the artifact
    assert run("export", tmp_path / "there" / "art", "--out", tmp_path / "m.onnx", "-q").exit_code == 0
    source.parent.mkdir()
    shutil.copy(files["dynamo"], source)  # the recorded path holds another file now: the one beside is taken
    assert run("export", tmp_path / "there" / "art", "--out", tmp_path / "m1.onnx", "-q").exit_code == 0
    shutil.copy(files["dynamo"], tmp_path / "there" / "art" / "tiny.onnx")  # the same name, another file, everywhere
    changed = run("export", tmp_path / "there" / "art", "--out", tmp_path / "m2.onnx")
    assert changed.exit_code == 3 and "has changed since the plan recorded it" in error_line(changed)
    source.unlink()
    gone = run("export", tmp_path / "there" / "art", "--out", tmp_path / "m3.onnx")
    line = error_line(gone)
    assert gone.exit_code == 3 and f"was pruned from {source.resolve()}, which is gone: put that file" in line, line


class PooledHead(nn.Module):
    """A classifier head as torchvision's ResNets end: conv-BN-ReLU, global pooling, flatten, Linear.
    ``pool`` None is ``x.mean((2, 3))`` (a ReduceMean with keepdims=0)."""

    def __init__(self, pool: nn.Module | None) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.pool = pool
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.body(x)
        pooled = self.pool(features) if self.pool is not None else features.mean((2, 3))
        return self.fc(pooled.flatten(1))


@pytest.mark.parametrize("pool, reduce", [(nn.AdaptiveAvgPool2d(1), "ReduceMean"), (nn.AdaptiveMaxPool2d(1), "ReduceMax"),
                                          (None, "ReduceMean")], ids=["avg", "max", "mean-no-keepdims"])
def test_global_pooling_from_foadx_export_imports_and_prunes(tmp_path, pool, reduce):
    """Opset 18 moved a Reduce operator's axes into an input; onnx2torch 1.5.15 converts none at 18."""
    net, path = randomised(PooledHead(pool)), tmp_path / "pooled.onnx"
    export_onnx(net, path, input_size=(32, 32), input_channels=3, verify=False)
    written = onnx.load(str(path))
    assert written.opset_import[0].version == 18 and reduce in [node.op_type for node in written.graph.node]
    images = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        imported = resolve_model(str(path)).module()(images).numpy()
    assert compare_output("logits", imported, ort_outputs(path, images.numpy()), Tolerances()).passed
    result = run("prune", path, "--data", "demo", "--images", "8", "--batch-size", "8", "--ratio", "0.5",
                 "--out", tmp_path / "art", "-q")
    assert result.exit_code == 0, result.output
    assert [len(group["kept"]) for group in json.loads((tmp_path / "art" / "plan.json").read_text())["groups"]] == [8]


def test_an_opset_18_operator_onnx_cannot_convert_down_is_named_with_the_way_out(tmp_path):
    """Split at opset 18 (num_outputs) has no adapter to 17; the message was the converter's
    internal assertion, it now names the operator and the opset to export at."""
    weight = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "w")
    nodes = [helper.make_node("Conv", ["data", "w"], ["c"]),
             helper.make_node("Split", ["c"], ["a", "b"], axis=1, num_outputs=2),
             helper.make_node("Add", ["a", "b"], ["y"])]
    graph = helper.make_graph(nodes, "split", [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 8, 8])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(tmp_path / "split.onnx"))
    result = run("prune", tmp_path / "split.onnx", "--data", "demo", "--images", "8", "--ratio", "0.3",
                 "--out", tmp_path / "o")
    line = error_line(result)
    assert result.exit_code == 3 and "its Split nodes from opset 18 down" in line and "--opset 17" in line, line
