"""Models as users hold them (issue 24): several outputs, a dict output, a module that keeps a
tensor on itself in forward, a module called twice. Each is driven through the real CLI as a
user would (prune -> export -> verify -> bench -> eval) and checked in real onnxruntime."""

from __future__ import annotations

import copy
import json
from collections import namedtuple

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from torch import nn

import foadx
from cli_helpers import error_line, run
from foadx.errors import BadInputError
from foadx.latency.values import distortion_values
from foadx.module_copy import copy_module
from foadx.outputs import flatten_outputs
from foadx.pruning.api import prunable_groups

MODELS = '''
import torch
from torch import nn


class Features(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 8, 3, 1, 1), nn.Conv2d(8, 8, 3, 1, 1)

    def maps(self, x):
        return self.c2(self.c1(x).relu()).relu()


class TwoOutputs(Features):  # issue 24, input 1: logits and the embedding they come from
    def __init__(self):
        super().__init__()
        self.embed, self.head = nn.Linear(8, 4), nn.Linear(4, 2)

    def forward(self, x):
        e = self.embed(self.maps(x).mean((2, 3)))
        return self.head(e), e


class WithMap(TwoOutputs):  # logits beside a conv feature map
    def forward(self, x):
        maps = self.maps(x)
        return self.head(self.embed(maps.mean((2, 3)))), maps


class DictOutput(TwoOutputs):  # input 2; keys out of alphabetical order
    def forward(self, x):
        e = self.embed(self.maps(x).mean((2, 3)))
        return {"logits": self.head(e), "embedding": e}


class Caching(TwoOutputs):  # input 4: keeps its features, as Grad-CAM hooks do
    def forward(self, x):
        self.last = self.maps(x)
        return self.head(self.embed(self.last.mean((2, 3))))


class Shared(Features):  # c2 applied twice
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(self.c2(self.maps(x)).relu().mean((2, 3)))


def two(): return TwoOutputs()
def with_map(): return WithMap()
def dict_output(): return DictOutput()
def caching(): return Caching()
def shared(): return Shared()
'''
# factory -> (extra prune options, the ONNX file's outputs as (name, shape without the batch))
CASES = {
    "two": ((), [("output_0", [2]), ("output_1", [4])]),
    "with_map": ((), [("output_0", [2]), ("output_1", [8, 32, 32])]),
    "dict_output": ((), [("logits", [2]), ("embedding", [4])]),
    "caching": ((), [("output", [2])]),
    "shared": (("--include-coupled",), [("output", [2])]),
}


@pytest.fixture(scope="module")
def models_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("user") / "user_models.py"
    path.write_text(MODELS)
    return path


@pytest.fixture(scope="module")
def pruned(models_file):
    """factory -> its artifact folder, pruned by the CLI at --ratio 0.5."""
    folders = {}
    for name, (options, _) in CASES.items():
        out = models_file.parent / f"pruned_{name}"
        result = run("prune", f"{models_file}:{name}", "--input-size", "32", "--data", "demo", "--images", "8",
                     "--ratio", "0.5", *options, "--out", out, "-q")
        assert result.exit_code == 0, (name, result.output)
        folders[name] = out
    return folders


def onnx_outputs(path) -> list[tuple[str, list[int]]]:
    return [(output.name, [dim.dim_value for dim in output.type.tensor_type.shape.dim][1:])
            for output in onnx.load(str(path)).graph.output]


def torch_outputs(model: nn.Module, batch: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        return [tensor.numpy() for _, tensor in flatten_outputs(model(torch.from_numpy(batch)))]


@pytest.mark.parametrize("name", list(CASES))
def test_a_pruned_user_model_exports_verifies_and_benches(name, pruned, tmp_path):
    artifact, (_, expected) = pruned[name], CASES[name]
    exported = run("export", artifact, "--out", tmp_path / "m.onnx", "--trust-code", "-q")
    assert exported.exit_code == 0, exported.output  # before: exit 1 for dict_output and caching
    assert onnx_outputs(tmp_path / "m.onnx") == expected
    verified = run("verify", tmp_path / "m.onnx", "--against", artifact, "--trust-code", "--json")
    assert verified.exit_code == 0, verified.output
    report = json.loads(verified.output)
    assert report["passed"] and [o["name"] for o in report["cases"][0]["outputs"]] == [n for n, _ in expected]
    # an independent look: onnxruntime's outputs are the pruned torch model's, output by output
    model = foadx.load_pruned(artifact, trust_code=True).eval()
    batch = np.random.default_rng(1).standard_normal((3, 3, 32, 32), dtype=np.float32)
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    for got, want in zip(session.run(None, {"input": batch}), torch_outputs(model, batch), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    bench = run("bench", artifact, "--trust-code", "--backend", "torch-cpu", "--duration-s", "0.05",
                "--warmup-ms", "10", "--rounds", "1", "--min-iterations", "3", "--json")
    assert bench.exit_code == 0, bench.output  # before: exit 1 (AttributeError) for dict_output


def test_every_output_keeps_its_shape_and_the_shared_conv_is_cut_alike(pruned):
    for name, (_, expected) in CASES.items():
        model = foadx.load_pruned(pruned[name], trust_code=True).eval()
        outputs = flatten_outputs(model(torch.zeros(2, 3, 32, 32)), "output")
        assert [(n, list(t.shape[1:])) for n, t in outputs] == expected, name
    shared = foadx.load_pruned(pruned["shared"], trust_code=True)
    assert shared.c1.out_channels == shared.c2.in_channels == shared.c2.out_channels == shared.fc.in_features == 4


def test_eval_reads_the_first_output_of_a_dict_like_the_onnx_file(pruned, tmp_path):
    artifact = pruned["dict_output"]
    assert run("export", artifact, "--out", tmp_path / "d.onnx", "--trust-code", "-q").exit_code == 0
    for model, extra in ((artifact, ("--trust-code",)), (tmp_path / "d.onnx", ())):
        result = run("eval", model, "--data", "demo", *extra, "--json")
        # before: exit 1 on the torch side; both sides read the 2 logits (not the 4-d embedding), too few for 10 digits
        assert result.exit_code == 3, result.output
        assert "the model outputs 2 scores per image, and the data has 10 classes" in error_line(result)


@pytest.mark.parametrize("opset", [13, 18])  # the legacy exporter, then the dynamo one
def test_both_exporters_name_and_order_dict_outputs_alike(models_file, tmp_path, opset):
    path = tmp_path / "u.onnx"
    spec = f"{models_file}:dict_output"
    exported = run("export", spec, "--input-size", "32", "--opset", str(opset), "--out", path, "-q")
    assert exported.exit_code == 0, exported.output
    assert onnx_outputs(path) == CASES["dict_output"][1]
    assert run("verify", path, "--against", spec, "--input-size", "32", "-q").exit_code == 0


def test_verify_pairs_outputs_by_name_not_position(models_file, tmp_path):
    """The file's outputs listed in the other order still compare logits with logits."""
    spec, path = f"{models_file}:dict_output", tmp_path / "u.onnx"
    assert run("export", spec, "--input-size", "32", "--opset", "13", "--out", path, "-q").exit_code == 0
    graph = onnx.load(str(path))
    outputs = list(graph.graph.output)
    del graph.graph.output[:]
    graph.graph.output.extend(reversed(outputs))
    onnx.save(graph, str(tmp_path / "reversed.onnx"))
    assert [o.name for o in onnxruntime.InferenceSession(str(tmp_path / "reversed.onnx")).get_outputs()] == \
        ["embedding", "logits"]
    verified = run("verify", tmp_path / "reversed.onnx", "--against", spec, "--input-size", "32", "--json")
    assert verified.exit_code == 0, verified.output
    assert [o["name"] for o in json.loads(verified.output)["cases"][0]["outputs"]] == ["embedding", "logits"]


def test_a_ratio_for_an_output_layer_is_refused_naming_it(models_file, tmp_path):
    (tmp_path / "ratios.json").write_text(json.dumps({"c1": 0.5, "embed": 0.5, "nothing": 0.5}))
    result = run("prune", f"{models_file}:two", "--input-size", "32", "--data", "demo", "--images", "8",
                 "--ratios", tmp_path / "ratios.json", "--out", tmp_path / "out")
    assert result.exit_code == 3  # before: the embed entry was silently ignored
    line = error_line(result)
    assert "--ratios name groups not prunable here: embed (it produces a model output" in line
    assert "nothing (no such group" in line and "c1" not in line.split("here:")[1]
    assert not (tmp_path / "out").exists()


def test_flatten_outputs_names_every_tensor_in_pytree_order():
    a, b, c, d, e, f = (torch.full((1,), float(i)) for i in range(6))
    assert [(n, t) for n, t in flatten_outputs(a, "embedding")] == [("embedding", a)]
    assert [n for n, _ in flatten_outputs((a, [b, c]))] == ["output_0", "output_1_0", "output_1_1"]
    named = flatten_outputs({"z": a, "aux": (b, [c]), "my key": d, "input": e, "z_2": f}, reserved=("input",))
    assert [n for n, _ in named] == ["z", "aux_0", "aux_1_0", "my_key", "input_2", "z_2"]
    assert [t for _, t in named] == [a, b, c, d, e, f]  # the very tensors, in the dict's order
    clash = flatten_outputs({"a_0": a, "a": [b], "x": (c,)})
    assert [n for n, _ in clash] == ["a_0", "a_0_2", "x_0"]
    Pair = namedtuple("Pair", "logits embedding")
    assert [n for n, _ in flatten_outputs(Pair(a, b))] == ["logits", "embedding"]


def test_a_returned_value_that_is_not_a_tensor_is_refused_naming_it():
    with pytest.raises(BadInputError, match=r"returns a NoneType as output 'aux'"):
        flatten_outputs({"logits": torch.zeros(1), "aux": None})


class Keeps(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.alias = self.conv  # one module under two names
        self.cache: dict[str, list[torch.Tensor]] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.last = self.conv(x)
        self.cache["maps"] = [self.last * 2]
        return self.last.mean((2, 3))


def test_copy_module_copies_tensors_kept_in_forward_detached():
    model = Keeps()
    model(torch.randn(2, 3, 4, 4))  # grad-enabled: self.last is part of an autograd graph
    with pytest.raises(RuntimeError, match="graph leaves"):
        copy.deepcopy(model)  # what every copy site did before
    copied = copy_module(model)
    assert copied.last.is_leaf and copied.last.data_ptr() != model.last.data_ptr()
    assert torch.equal(copied.last, model.last.detach()) and torch.equal(copied.cache["maps"][0], model.last.detach() * 2)
    assert copied.alias is copied.conv and copied.conv is not model.conv
    assert torch.equal(copied.conv.weight, model.conv.weight) and copied.conv.weight.requires_grad
    assert not model.last.is_leaf  # the original is left as it was


class SumAndSquare(nn.Module):
    """x -> 1x1 channels scaled 1, 2, 3 -> their sum g, returned as {"g": g, "square": (g * g,)};
    it keeps g on itself. On ones, g = 6; without channel 0, g = 5; with channel 2 alone, g = 3."""

    def __init__(self) -> None:
        super().__init__()
        self.spread = nn.Conv2d(1, 3, 1, bias=False)
        self.gather = nn.Conv2d(3, 1, 1, bias=False)
        self.spread.weight.data = torch.tensor([1.0, 2.0, 3.0]).reshape(3, 1, 1, 1)
        self.gather.weight.data = torch.ones(1, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> dict[str, object]:
        self.last = self.gather(self.spread(x).relu())
        return {"g": self.last, "square": (self.last * self.last,)}


def test_a_width_costs_the_distortion_of_every_output_by_hand():
    model, images = SumAndSquare(), torch.ones(4, 1, 1, 1)
    [group] = prunable_groups(model, images[:1])
    model(images)  # the model now holds a non-leaf tensor: the distortion's copy must take it
    scores = torch.tensor([1.0, 2.0, 3.0])  # top-k: width 2 drops channel 0, width 1 keeps channel 2
    values = distortion_values(model, [images], [group], {group.name: scores}, False, {group.name: [1, 2, 3]})
    energy = 6 ** 2 + 36 ** 2  # per image, both outputs
    assert values[group.name] == pytest.approx({1: -((6 - 3) ** 2 + (36 - 9) ** 2) / energy,
                                                2: -((6 - 5) ** 2 + (36 - 25) ** 2) / energy, 3: 0.0})


def test_fine_tuning_a_model_with_several_outputs_is_refused_naming_them(pruned, tmp_path):
    result = run("finetune", pruned["dict_output"], "--trust-code", "--data", "demo", "--steps-per-epoch", "1",
                 "--batch-size", "4",
                 "--out", tmp_path / "tuned")
    assert result.exit_code == 3  # before: an AttributeError on the dict, exit 1
    assert "one (N, classes or embedding) output; this one returns logits (2, 2), embedding (2, 4)" in error_line(result)
    assert not (tmp_path / "tuned").exists()
