"""Issue 24, any input contract that fits one tensor: the input channels come from the model,
images are fed at that count (grey by ITU-R 601-2 luma, RGBA with the file's alpha), and a model
that does not run on the one (N, C, H, W) tensor foadx feeds it is refused in every command that
runs it, before any work, in one line (exit 3)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from PIL import Image
from torch import nn

from foadx.data import calibration_images
from foadx.data.labeled import open_labeled
from foadx.data.transforms import match_channels
from foadx.errors import ArtifactError, BadInputError, DataError
from foadx.models import build_model
from foadx.provenance import ModelSource, Plan, provenance_of
from tests.cli_helpers import error_line, run

MODELS = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, channels=3, width=8):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(channels, width, 3, 1, 1), nn.Conv2d(width, width, 3, 1, 1)
        self.fc = nn.Linear(width, 10)

    def forward(self, x):
        return self.fc(self.c2(self.c1(x).relu()).relu().mean((2, 3)))


class TwoInputs(Net):
    def forward(self, x, y):
        return super().forward(x + y)


class Asserts(Net):
    def forward(self, x):
        assert x.shape[-1] == 99, "this model wants 99-pixel-wide images"
        return super().forward(x)


class NormFirst(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm, self.body = nn.BatchNorm2d(4), Net(4)  # a norm, not a conv, takes the input

    def forward(self, x):
        return self.body(self.norm(x))


def net(channels=3, width=8):
    return Net(channels, width)


def two_inputs():
    return TwoInputs()


def asserts():
    return Asserts()


def norm_first():
    return NormFirst()
'''


@pytest.fixture
def models(tmp_path):
    path = tmp_path / "user_models.py"
    path.write_text(MODELS)
    return path


def _png_folder(folder, images):
    folder.mkdir(parents=True)
    for index, (mode, array) in enumerate(images):
        Image.fromarray(array, mode).save(folder / f"{index}.png")
    return folder


# -- the channel count comes from the model -------------------------------------------------

@pytest.mark.parametrize(("channels", "mean", "std"), [(1, (0.0,), (1.0,)), (4, (0.0,) * 4, (1.0,) * 4),
                                                       (3, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
def test_a_user_factory_records_its_first_layers_channels_and_one_mean_per_channel(models, channels, mean, std):
    source = provenance_of(build_model(f"{models}:net", (16, 16), channels=channels)).source
    assert source.input_chw == (channels, 16, 16) and source.mean == mean and source.std == std


def test_a_norm_registered_before_the_first_conv_gives_the_channels(models):
    assert provenance_of(build_model(f"{models}:norm_first", (16, 16))).source.input_chw == (4, 16, 16)


def test_mean_and_std_of_another_length_than_the_channels_are_refused():
    with pytest.raises(BadInputError, match=r"one value per input channel \(1\), got 3 and 3"):
        ModelSource("m", (8, 8), mean=(0.5,) * 3, std=(0.5,) * 3, input_channels=1)
    plan = Plan.empty(ModelSource("m", (8, 8), mean=(0.5,), std=(0.5,), input_channels=1)).to_json()
    plan["model"]["mean"] = [0.5, 0.5, 0.5]
    with pytest.raises(ArtifactError, match=r"malformed plan: .*one value per input channel \(1\), got 3 and 1"):
        Plan.from_json(plan)
    del plan["model"]["mean"], plan["model"]["std"]  # absent: the defaults for one channel
    assert Plan.from_json(plan).model.mean == (0.0,)


# -- images at the model's channel count ----------------------------------------------------

def test_channel_conversions_by_hand():
    rgb = torch.tensor([1.0, 0.5, 0.0]).view(1, 3, 1, 1)
    assert match_channels(rgb, 1).flatten().tolist() == pytest.approx([0.299 + 0.587 * 0.5])
    assert match_channels(rgb, 4).flatten().tolist() == [1.0, 0.5, 0.0, 1.0]  # opaque alpha added
    grey = torch.tensor([0.25]).view(1, 1, 1, 1)
    assert match_channels(grey, 3).flatten().tolist() == [0.25] * 3
    assert match_channels(grey, 4).flatten().tolist() == [0.25, 0.25, 0.25, 1.0]
    rgba = torch.tensor([0.2, 0.4, 0.6, 0.1]).view(1, 4, 1, 1)
    assert match_channels(rgba, 3).flatten().tolist() == pytest.approx([0.2, 0.4, 0.6])  # alpha dropped
    assert match_channels(rgba, 1).flatten().tolist() == pytest.approx([0.299 * 0.2 + 0.587 * 0.4 + 0.114 * 0.6])
    with pytest.raises(DataError, match="the model takes 2 input channels; foadx feeds images as 1 "):
        match_channels(rgb, 2)


def test_rgb_files_fed_to_a_grey_model_are_pillows_luma(tmp_path):
    rng = np.random.default_rng(0)
    photos = [rng.integers(0, 256, (12, 12, 3), dtype=np.uint8) for _ in range(3)]
    folder = _png_folder(tmp_path / "rgb", [("RGB", photo) for photo in photos])
    (batch,) = calibration_images(str(folder), 3, (12, 12), (0.0,), (1.0,))
    luma = np.stack([np.asarray(Image.fromarray(photo).convert("L")) for photo in photos]) / 255.0
    assert batch.shape == (3, 1, 12, 12)
    assert np.abs(batch[:, 0].numpy() - luma).max() <= 0.5 / 255 + 1e-6  # Pillow rounds to 8 bits, foadx does not


def test_rgba_files_keep_their_alpha_and_others_are_opaque_for_a_4_channel_model(tmp_path):
    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 256, (10, 10, 4), dtype=np.uint8)
    grey = rng.integers(0, 256, (10, 10), dtype=np.uint8)
    folder = _png_folder(tmp_path / "mixed", [("RGBA", rgba), ("L", grey)])
    (batch,) = calibration_images(str(folder), 2, (10, 10), (0.0,) * 4, (1.0,) * 4)
    assert batch.shape == (2, 4, 10, 10)
    assert torch.equal(batch[0], torch.from_numpy(rgba).permute(2, 0, 1).float() / 255.0)
    assert torch.equal(batch[1, :3], torch.from_numpy(grey).float().expand(3, -1, -1) / 255.0)
    assert torch.equal(batch[1, 3], torch.ones(10, 10))
    classes = tmp_path / "classes"
    _png_folder(classes / "a", [("RGBA", rgba)])
    _png_folder(classes / "b", [("RGBA", rgba)])
    assert open_labeled(str(classes), "test", channels=4).load(0).shape == (10, 10, 4)
    assert open_labeled(str(classes), "test").load(0).shape == (10, 10, 3)


def test_demo_digits_are_fed_grey_as_they_are(tmp_path):
    from foadx.data.calibration import DEMO_FILE

    with np.load(DEMO_FILE) as loaded:
        digits = loaded["images"][:4]
    batch = next(iter(calibration_images("demo", 5000, (28, 28), (0.5,), (0.25,), batch_size=4)))  # all, in order
    assert batch.shape == (4, 1, 28, 28)
    assert torch.allclose(batch[:, 0], (torch.from_numpy(digits).reshape(4, 28, 28).float() / 255.0 - 0.5) / 0.25)


def test_an_rgba_array_is_read(tmp_path):
    pixels = np.arange(2 * 3 * 3 * 4, dtype=np.uint8).reshape(2, 3, 3, 4)
    np.save(tmp_path / "rgba.npy", pixels)
    (batch,) = calibration_images(str(tmp_path / "rgba.npy"), 2, (3, 3), (0.0,) * 4, (1.0,) * 4)
    assert torch.equal(batch, torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255.0)


# -- the commands, for grey and 4-channel models --------------------------------------------

def _ok(result):
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.parametrize("channels", [1, 4])
def test_export_verify_bench_and_eval_take_the_models_channels(models, tmp_path, channels):
    spec = f"{models}:net"
    size = ("--input-size", "16", "--model-arg", f"channels={channels}")
    _ok(run("inspect", spec, *size, "--quiet"))
    onnx_file = tmp_path / "net.onnx"
    _ok(run("export", spec, *size, "--out", onnx_file, "--images", "4", "--quiet"))
    graph = onnx.load(str(onnx_file))
    assert [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim][1:] == [channels, 16, 16]
    assert json.loads({p.key: p.value for p in graph.metadata_props}["foadx.mean"]) == [0.0] * channels
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    assert session.run(None, {session.get_inputs()[0].name: np.zeros((2, channels, 16, 16), np.float32)})[0].shape == (2, 10)
    _ok(run("verify", onnx_file, "--against", spec, *size, "--images", "4", "--quiet"))
    _ok(run("bench", spec, *size, "--duration-s", "0.05", "--rounds", "1", "--min-iterations", "2",
            "--report", tmp_path / "bench.json", "--quiet"))
    assert json.loads((tmp_path / "bench.json").read_text())["results"][0]["input_shape"] == [1, channels, 16, 16]
    for model in (spec, onnx_file):
        evaluated = _ok(run("eval", model, *(size if model == spec else ()), "--data", "demo"))
        assert "on 1000 images" in evaluated.output


@pytest.mark.parametrize("channels", [1, 4])
def test_prune_on_the_demo_and_on_a_folder_then_the_artifact_exports_and_verifies(models, tmp_path, channels):
    spec, size = f"{models}:net", ("--input-size", "16", "--model-arg", f"channels={channels}")
    rng = np.random.default_rng(2)
    folder = _png_folder(tmp_path / "photos", [("RGBA", rng.integers(0, 256, (20, 20, 4), dtype=np.uint8)),
                                                ("RGB", rng.integers(0, 256, (24, 24, 3), dtype=np.uint8))])
    for data, out in (("demo", tmp_path / "on_demo"), (folder, tmp_path / "on_folder")):
        _ok(run("prune", spec, *size, "--ratio", "0.5", "--data", data, "--images", "8", "--out", out, "--quiet"))
        plan = json.loads((out / "plan.json").read_text())
        assert plan["model"]["input_channels"] == channels and plan["model"]["mean"] == [0.0] * channels
        assert {group["name"]: len(group["kept"]) for group in plan["groups"]} == {"c1": 4, "c2": 4}
    assert "image folder photos" in json.loads((tmp_path / "on_folder" / "plan.json").read_text())["calibration"]["source"]
    artifact, onnx_file = tmp_path / "on_demo", tmp_path / "pruned.onnx"
    _ok(run("export", artifact, "--trust-code", "--out", onnx_file, "--images", "4", "--quiet"))
    _ok(run("verify", onnx_file, "--against", artifact, "--trust-code", "--images", "4", "--quiet"))
    _ok(run("bench", artifact, "--trust-code", "--duration-s", "0.05", "--rounds", "1", "--min-iterations", "2", "--quiet"))


@pytest.mark.parametrize("channels", [1, 4])
def test_finetune_on_the_demo_digits(models, tmp_path, channels):
    _ok(run("finetune", f"{models}:net", "--input-size", "16", "--model-arg", f"channels={channels}", "--data", "demo",
            "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "16", "--out", tmp_path / "tuned", "--quiet"))
    plan = json.loads((tmp_path / "tuned" / "plan.json").read_text())
    assert plan["model"]["input_channels"] == channels and plan["finetune"]["config"]["task"] == "classify"


@pytest.mark.slow  # profiling times every unit on onnxruntime: ~45 s on 2 shared cores
def test_profile_a_grey_model(models, tmp_path):
    _ok(run("profile", f"{models}:net", "--input-size", "16", "--model-arg", "channels=1", "--model-arg", "width=32",
            "--out", tmp_path / "lut.json", "--quiet"))
    entries = json.loads((tmp_path / "lut.json").read_text())["entries"]
    assert {(entry["key"]["in_channels"], entry["key"]["out_channels"]) for entry in entries} >= {(1, 16), (1, 32)}


def test_a_channel_count_images_cannot_have_runs_without_data_and_is_refused_with_it(models, tmp_path):
    spec, size = f"{models}:net", ("--input-size", "16", "--model-arg", "channels=2")
    _ok(run("inspect", spec, *size, "--quiet"))
    _ok(run("export", spec, *size, "--data", "none", "--out", tmp_path / "two.onnx", "--quiet"))
    refusal = "foadx: error: the model takes 2 input channels; foadx feeds images as 1 (grey), 3 (RGB) or 4 (RGBA) channels"
    for command in (("prune", "--data", "demo", "--out", tmp_path / "p"), ("finetune", "--data", "demo", "--out", tmp_path / "f"),
                    ("eval", "--data", "demo")):
        result = run(command[0], spec, *size, *command[1:])
        assert result.exit_code == 3 and error_line(result) == refusal
    assert not (tmp_path / "p").exists() and not (tmp_path / "f").exists()


# -- a model that does not run on what foadx feeds it ---------------------------------------

COMMANDS = {
    "inspect": (), "prune": ("--data", "demo", "--out", "{tmp}/pruned"), "profile": ("--out", "{tmp}/lut.json"),
    "finetune": ("--data", "demo", "--out", "{tmp}/tuned"), "eval": ("--data", "demo"),
    "export": ("--out", "{tmp}/m.onnx"), "bench": (), "verify": (),
}


@pytest.mark.parametrize(("factory", "said"), [
    ("two_inputs", "TwoInputs.forward() missing 1 required positional argument: 'y'"),
    ("asserts", "this model wants 99-pixel-wide images"),
    ("net", "expected input[1, 3, 16, 16] to have 1 channels, but got 3 channels instead"),  # built RGB, loaded grey
])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_model_that_does_not_run_on_the_tensor_is_refused_by_every_command(models, tmp_path, factory, said, command):
    spec = f"{models}:{factory}"
    if factory == "net":  # an artifact whose plan says RGB around a grey network: the plan lies
        _ok(run("prune", spec, "--input-size", "16", "--model-arg", "channels=1", "--ratio", "0.5", "--data", "demo",
                "--images", "4", "--out", tmp_path / "grey", "--quiet"))
        plan = json.loads((tmp_path / "grey" / "plan.json").read_text())
        plan["model"].update(input_channels=3, mean=[0.0] * 3, std=[1.0] * 3)
        (tmp_path / "grey" / "plan.json").write_text(json.dumps(plan))
        model, build = tmp_path / "grey", ("--trust-code",)
    else:
        model, build = spec, ("--input-size", "16")
    extra = [str(value).format(tmp=tmp_path) for value in COMMANDS[command]]
    if command == "verify":
        onnx_file = tmp_path / "ok.onnx"
        _ok(run("export", f"{models}:net", "--input-size", "16", "--data", "none", "--out", onnx_file, "--quiet"))
        result = run("verify", onnx_file, "--against", model, *build)
    else:
        result = run(command, model, *build, *extra)
    assert result.exit_code == 3, result.output
    line = error_line(result)
    assert line.startswith("foadx: error: the model does not run on what foadx feeds it, one (1, 3, 16, 16) "
                           "(N, C, H, W) tensor: ") and said in line
    assert not list(tmp_path.glob("pruned*")) and not (tmp_path / "tuned").exists() and not (tmp_path / "m.onnx").exists()


def test_the_library_check_runs_a_module_once_without_gradients():
    from foadx.models.input_contract import check_forward

    calls = []

    class Spy(nn.Module):
        def forward(self, x):
            calls.append((tuple(x.shape), torch.is_grad_enabled()))
            return x

    check_forward(Spy(), (2, 5, 7))
    assert calls == [((1, 2, 5, 7), False)]
