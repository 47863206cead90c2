"""Gates that cannot be fooled and inputs that never get in: each hole found by trying foadx as
an attacker or a careless pipeline would, reproduced (every test here failed before the fix)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from cli_helpers import error_line, run
from onnx import numpy_helper

import foadx
from foadx.atomic import atomic_directory
from foadx.errors import ArtifactError, BadInputError
from foadx.export import export_onnx, verify_onnx

# --- verify cannot pass a wrong model, however small its outputs ---

@pytest.fixture(scope="module")
def tiny_output_model(digits_112, tmp_path_factory):
    """A randomly initialised, pruned MobileFaceNet: embeddings of RMS ~5e-6, so every error of
    a wrong file is far below atol = 1e-3."""
    torch.manual_seed(0)
    pruned = foadx.prune(foadx.build_model("mobilefacenet"), digits_112, ratio=0.5).model
    folder = tmp_path_factory.mktemp("tiny")
    export_onnx(pruned, folder / "good.onnx", opset=17, verify=False)
    graph = onnx.load(str(folder / "good.onnx"))
    largest = max(graph.graph.initializer, key=lambda tensor: int(np.prod(tensor.dims)))
    weights = numpy_helper.to_array(largest)
    noise = np.random.default_rng(0).standard_normal(weights.shape).astype(np.float32) * weights.std() * 5
    largest.CopyFrom(numpy_helper.from_array(weights * -3.0 + noise, largest.name))
    onnx.save(graph, str(folder / "perturbed.onnx"))
    return pruned, folder


def test_a_perturbed_file_fails_although_every_element_is_within_atol(tiny_output_model, digits_112):
    pruned, folder = tiny_output_model
    good = verify_onnx(folder / "good.onnx", pruned, images=digits_112.numpy())
    assert good.passed, good.summary()
    bad = verify_onnx(folder / "perturbed.onnx", pruned, images=digits_112.numpy())
    outputs = [output for case in bad.cases for output in case.outputs]
    assert all(output.mismatches == 0 for output in outputs)  # Polygraphy's element check alone passes it
    assert max(output.max_abs for output in outputs) < 1e-3 and not bad.passed
    assert bad.worst()["min_sample_cosine"] < 0.9 and bad.worst()["max_scaled_error"] > 1.0
    assert bad.worst()["min_agreement_pct"] < 100.0  # real images: nearest neighbours change


def test_verify_cli_exits_4_on_the_perturbed_file(tiny_output_model, tmp_path):
    pruned, folder = tiny_output_model
    artifact = foadx.pruning.save_artifact(pruned, tmp_path / "art")
    result = run("verify", folder / "perturbed.onnx", "--against", artifact, "--report", tmp_path / "p.json", "--quiet")
    assert result.exit_code == 4 and "x the output's RMS" in error_line(result)
    report = json.loads((tmp_path / "p.json").read_text())
    assert report["failures"] and report["tolerances"]["min_cosine"] == 0.9999
    assert "RMS of reference" in run("report", tmp_path / "p.json").output


# --- opening an artifact never runs code it names ---

def write_plan(folder: Path, spec: str, kwargs: dict, weights: dict | None = None) -> Path:
    folder.mkdir()
    plan = {"schema_version": 1, "model": {"spec": spec, "input_size": [32, 32], "kwargs": kwargs},
            "groups": [], "output_layers": []}
    (folder / "plan.json").write_text(json.dumps(plan))
    torch.save(weights or {}, folder / "weights.pt")
    return folder


def test_a_plan_naming_code_does_not_run_it(tmp_path):
    marker = tmp_path / "MARKER"
    artifact = write_plan(tmp_path / "evil", "os:system", {"command": f"touch {marker}"})
    for command in (("inspect", artifact), ("export", artifact, "--out", tmp_path / "e.onnx"),
                    ("bench", artifact, "--duration-s", "0.01")):
        result = run(*command)
        assert result.exit_code == 3 and "'os:system'" in error_line(result) and "--trust-code" in error_line(result)
    with pytest.raises(ArtifactError, match="would import and run"):
        foadx.load_pruned(artifact, "cpu")
    assert not marker.exists()


def test_trust_code_builds_a_user_factory_named_by_a_plan(tmp_path):
    factory = tmp_path / "net.py"
    factory.write_text("import torch\n\ndef tiny():\n    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), "
                       "torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))\n")
    torch.manual_seed(0)
    model = foadx.build_model(f"{factory}:tiny", (32, 32))
    artifact = write_plan(tmp_path / "user", f"{factory}:tiny", {}, model.state_dict())
    assert run("inspect", artifact, "--json").exit_code == 3
    trusted = run("inspect", artifact, "--trust-code", "--json")
    assert trusted.exit_code == 0, trusted.output
    assert json.loads(trusted.output)["params"] == sum(p.numel() for p in model.parameters())


def test_weights_that_do_not_fit_an_artifact_name_each_key_and_shape(tmp_path):
    torch.manual_seed(0)
    state = foadx.build_model("vgg16_cifar").state_dict()
    state["classifier.weight"] = torch.zeros(3, 512)
    state["extra.bias"] = torch.zeros(2)
    del state["features.0.bn.bias"]
    artifact = write_plan(tmp_path / "art", "vgg16_cifar", {}, state)
    result = run("inspect", artifact)
    assert result.exit_code == 3
    assert error_line(result).endswith("does not fit its plan: missing: features.0.bn.bias; unexpected: extra.bias; "
                                       "shape mismatch: classifier.weight (3, 512) vs (10, 512)")


@pytest.mark.parametrize(("extra", "says"), [
    ({"x" * 100_000: torch.zeros(1)}, "unexpected: " + "x" * 120 + "..."),
    ({"evil\nkey": torch.zeros(1)}, "unexpected: evil\\nkey"),
    ({7: torch.zeros(1)}, "keys are parameter names (strings)"),
])
def test_hostile_checkpoint_keys_give_one_short_line(tmp_path, extra, says):
    state = {**foadx.build_model("vgg16_cifar").state_dict(), **extra}
    artifact = write_plan(tmp_path / "art", "vgg16_cifar", {}, state)
    result = run("inspect", artifact)
    assert result.exit_code == 3 and says in error_line(result) and len(error_line(result)) < 600
    assert result.output.count("\n") <= 2, result.output


def _vgg_state(change: str) -> dict:
    state = foadx.build_model("vgg16_cifar").state_dict()
    if change == "sparse":
        state["classifier.weight"] = state["classifier.weight"].to_sparse()
    elif change == "complex":
        state["classifier.weight"] = state["classifier.weight"].to(torch.complex64)
    elif change == "int32":
        state["classifier.weight"] = state["classifier.weight"].to(torch.int32)
    elif change == "nan":
        state["classifier.weight"][0, 0] = float("nan")
    elif change == "meta":
        state["classifier.weight"] = torch.empty_like(state["classifier.weight"], device="meta")
    return state


@pytest.mark.parametrize(("change", "says"), [
    ("sparse", "unusable values: classifier.weight layout sparse_coo"),
    ("complex", "unusable values: classifier.weight dtype complex64 vs float32"),
    ("int32", "unusable values: classifier.weight dtype int32 vs float32"),
    ("nan", "unusable values: classifier.weight not finite (NaN or infinity)"),
    ("meta", "unusable values: classifier.weight on the meta device (no values)"),
])
def test_weights_of_the_right_shape_but_unusable_values_are_refused(tmp_path, change, says):
    """Each used to load: sparse tensors ended in exit 1 with a 51-line message, complex ones in
    torch's two-line warning and their real parts, int32 silently cast, NaN in an eval of 10%."""
    artifact = write_plan(tmp_path / "art", "vgg16_cifar", {}, _vgg_state(change))
    result = run("inspect", artifact)
    assert result.exit_code == 3 and says in error_line(result), result.output


def test_a_compressed_checkpoint_record_is_refused_before_it_is_inflated(tmp_path):
    """torch.save never compresses; a DEFLATE record of zeros claims 1,000x its size (a bomb)."""
    import zipfile

    torch.save(foadx.build_model("vgg16_cifar").state_dict(), tmp_path / "plain.pt")
    with zipfile.ZipFile(tmp_path / "plain.pt") as plain, zipfile.ZipFile(tmp_path / "bomb.pt", "w") as bomb:
        for record in plain.infolist():
            bomb.writestr(record.filename, plain.read(record.filename), compress_type=zipfile.ZIP_DEFLATED)
    assert torch.load(tmp_path / "bomb.pt", weights_only=True).keys()  # torch itself would read it
    result = run("inspect", "vgg16_cifar", "--weights", tmp_path / "bomb.pt")
    assert result.exit_code == 3 and "is compressed, which torch.save never writes" in error_line(result)
    assert run("inspect", "vgg16_cifar", "--weights", tmp_path / "plain.pt").exit_code == 0
    with zipfile.ZipFile(tmp_path / "plain.pt") as plain, zipfile.ZipFile(tmp_path / "odd.pt", "w") as odd:
        for index, record in enumerate(plain.infolist()):
            info = zipfile.ZipInfo(record.filename)
            info.extra = b"\x34\x12\x10\x00ab" if index == 0 else b""  # claims 16 bytes, holds 2: Python's zipfile
            odd.writestr(info, plain.read(record.filename), compress_type=zipfile.ZIP_DEFLATED)  # stops, torch reads on
    result = run("inspect", "vgg16_cifar", "--weights", tmp_path / "odd.pt")
    assert result.exit_code == 3 and "a zip archive that does not parse" in error_line(result)


@pytest.mark.skipif(sys.platform == "win32", reason="FIFOs")
def test_a_weights_fifo_is_named_for_what_it_is_and_never_opened(tmp_path):
    import os

    os.mkfifo(tmp_path / "w.pt")
    result = run("inspect", "vgg16_cifar", "--weights", tmp_path / "w.pt")
    assert result.exit_code == 3 and "is not a regular file (a FIFO, socket or device)" in error_line(result)


def test_a_plan_cannot_make_a_few_bytes_build_gigabytes_or_fetch_weights(tmp_path):
    huge = write_plan(tmp_path / "huge", "torchvision:resnet18", {"num_classes": 3_000_000})  # 1.5 G parameters
    result = run("inspect", huge)
    assert result.exit_code == 3 and "argument num_classes=3000000 is beyond the 100,000" in error_line(result)
    state = foadx.build_model("torchvision:resnet18", num_classes=10).state_dict()
    pretrained = write_plan(tmp_path / "pre", "torchvision:resnet18", {"weights": "DEFAULT", "num_classes": 10}, state)
    result = run("inspect", pretrained)  # weights.pt replaces what DEFAULT would download (no network here: exit 6)
    assert result.exit_code == 0, result.output


def test_a_plan_output_layer_the_architecture_lacks_is_named(tmp_path):
    model = foadx.build_model("resnet56_cifar")
    foadx.prune(model, foadx.load_images("demo", model, 8), ratio=0.5).save(tmp_path / "art")
    plan = json.loads((tmp_path / "art" / "plan.json").read_text())
    (tmp_path / "art" / "plan.json").write_text(json.dumps({**plan, "output_layers": ["nonexistent.layer"]}))
    result = run("inspect", tmp_path / "art")
    assert result.exit_code == 3 and "plan output layer 'nonexistent.layer' is not a module of resnet56_cifar" in error_line(result)


def test_a_graph_onnxruntime_loads_but_cannot_run_is_one_line(tmp_path, capfd):
    """A Conv dilated beyond its 32x32 input: onnxruntime loads it and fails on the first batch;
    that was exit 1 with onnxruntime's own log line before it."""
    from onnx import TensorProto, helper

    weight = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1], dilations=[100000, 100000])],
                              "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 32, 32])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "dilated.onnx"))
    result = run("bench", tmp_path / "dilated.onnx", "--duration-s", "0.1")
    assert result.exit_code == 3 and str(tmp_path / "dilated.onnx") in error_line(result)
    assert "onnxruntime" not in capfd.readouterr().err  # its logger is quiet: the one line says it


@pytest.mark.parametrize(("field", "value", "says"), [
    ("parameters", {"t": float("nan")}, "'parameters.t' is nan: a recorded setting is a finite number"),
    ("calibration", {"images": [1, float("inf")]}, "'calibration.images[1]' is inf"),
    ("criterion", {"name": "foad"}, "'criterion' must be a name"),
])
def test_a_plans_recorded_settings_are_checked_too(tmp_path, field, value, says):
    artifact = write_plan(tmp_path / "art", "vgg16_cifar", {}, foadx.build_model("vgg16_cifar").state_dict())
    plan = json.loads((artifact / "plan.json").read_text())
    (artifact / "plan.json").write_text(json.dumps({**plan, field: value}))  # json writes NaN and Infinity as tokens
    result = run("inspect", artifact)
    assert result.exit_code == 3 and says in error_line(result), result.output


def test_top1_of_nan_scores_is_refused_not_reported(tmp_path):
    """Finite weights whose scores are NaN (a negative BN variance): eval printed top-1 0.1000."""
    from foadx.pruning.artifact import save_artifact

    model = foadx.build_model("resnet56_cifar").eval()
    with torch.no_grad():
        model.bn1.running_var.fill_(-1.0)
    result = run("eval", save_artifact(model, tmp_path / "art"), "--data", "demo")
    assert result.exit_code == 3 and "produced NaN or infinite scores for image 0" in error_line(result)


def test_a_plan_naming_a_huge_input_is_sized_before_it_runs(tmp_path):
    """input_size 4096x4096 is within the plan's range, but one forward of MobileFaceNet there took
    24 GB (killed); it is sized first on fake tensors, which hold no memory."""
    model = foadx.build_model("mobilefacenet", input_size=(32, 32))
    foadx.prune(model, foadx.load_images("demo", model, 8), ratio=0.5).save(tmp_path / "art")
    plan = json.loads((tmp_path / "art" / "plan.json").read_text())
    plan["model"]["input_size"] = [4096, 4096]
    (tmp_path / "art" / "plan.json").write_text(json.dumps(plan))
    result = run("inspect", tmp_path / "art")
    assert result.exit_code == 3 and "GiB; foadx refuses any tensor over 1 GiB" in error_line(result)


# --- NaN never gets in: calibration images, options ---

def test_nan_calibration_images_are_refused_within_seconds(tmp_path):
    images = np.random.default_rng(0).random((40, 32, 32, 3)).astype(np.float32)
    images[17, 4, 4, 1] = np.nan
    np.save(tmp_path / "nan.npy", images)
    for budget in (("--ratio", "0.3"), ()):  # an exact count (hung before) and paper mode ("succeeded" before)
        started = time.perf_counter()
        result = run("prune", "resnet56_cifar", "--data", tmp_path / "nan.npy", *budget, "--out", tmp_path / "o")
        assert result.exit_code == 3 and "image 17 holds NaN" in error_line(result)
        assert time.perf_counter() - started < 30 and not (tmp_path / "o").exists()


def test_all_nan_images_are_one_error_line_without_numpy_warnings(tmp_path):
    np.save(tmp_path / "nan.npy", np.full((8, 3, 32, 32), np.nan, np.float32))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run("prune", "resnet56_cifar", "--data", tmp_path / "nan.npy", "--images", "8", "--ratio", "0.3",
                     "--out", tmp_path / "o")
    assert result.exit_code == 3 and "image 0 holds NaN" in error_line(result)
    assert [str(warning.message) for warning in caught] == []  # numpy's "All-NaN slice encountered" went to stderr


def test_selection_refuses_a_nan_similarity_instead_of_looping():
    from foadx.foad import greedy_select, select_k

    S = torch.eye(6, dtype=torch.float64)
    S[2, 3] = S[3, 2] = float("nan")
    for call in (lambda: select_k(S, 3), lambda: greedy_select(S, 2, 0.5)):
        with pytest.raises(ValueError, match="NaN"):
            call()


@pytest.mark.parametrize("args", [
    ("verify", "x.onnx", "--against", "resnet56_cifar", "--atol", "nan"),
    ("verify", "x.onnx", "--against", "resnet56_cifar", "--rtol", "inf"),
    ("finetune", "resnet56_cifar", "--data", "demo", "--out", "o", "--scale", "nan"),
    ("bench", "resnet56_cifar", "--max-regression", "nan"),
])
def test_float_options_refuse_nan_and_inf(args, tmp_path):
    result = run(*[tmp_path / a if a in ("x.onnx", "o") else a for a in args])
    assert result.exit_code == 3 and "finite" in error_line(result)


# --- outputs: links and devices are never replaced; one writer; kills leave the old artifact ---

def test_out_may_not_be_a_device_or_a_link(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    for out in ("/dev/null", tmp_path / "link"):
        result = run("prune", "resnet56_cifar", "--data", "demo", "--ratio", "0.3", "--out", out)
        assert result.exit_code == 3, result.output
    report = run("eval", "resnet56_cifar", "--data", "demo", "--report", "/dev/null")
    assert report.exit_code == 3 and "not a regular file" in error_line(report)
    assert (tmp_path / "link").is_symlink()


def test_a_second_writer_is_refused_and_stale_staging_is_removed(tmp_path):
    target = tmp_path / "art"
    stale = tmp_path / ".art.dead.partial"
    stale.mkdir()
    (stale / "weights.pt").write_bytes(b"half")
    with atomic_directory(target) as staging:
        assert not stale.exists()
        with pytest.raises(BadInputError, match="another foadx run"):
            with atomic_directory(target):
                pass
        (staging / "plan.json").write_text("{}")
    assert (target / "plan.json").read_text() == "{}"


def test_a_killed_prune_leaves_the_previous_artifact_loadable(tmp_path):
    out = tmp_path / "art"
    command = [sys.executable, "-m", "foadx_cli", "prune", "resnet56_cifar", "--data", "demo", "--images", "16",
               "--ratio", "0.5", "--out", str(out), "--quiet"]
    subprocess.run(command, check=True, timeout=300)
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    for delay in (2.5, 5.0):  # import, calibration, selection, writing: whatever it is doing
        process = subprocess.Popen([*command[:-2], "--ratio", "0.3", "--out", str(out), "--quiet"])
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        files = {path.name: path.read_bytes() for path in out.iterdir()}
        assert files == before or sorted(files) == ["plan.json", "weights.pt"]
        foadx.load_pruned(out, "cpu")  # whichever artifact is there is whole
    rerun = subprocess.run(command, timeout=300)
    assert rerun.returncode == 0 and not list(tmp_path.glob(".art.*.partial"))


# --- the regression gate compares like with like ---

@pytest.fixture(scope="module")
def latency_report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gate")
    timing = ("--duration-s", "0.05", "--warmup-ms", "1", "--rounds", "1", "--min-iterations", "1")
    result = run("bench", "resnet56_cifar", "--backend", "torch-cpu", *timing, "--report", folder / "base.json",
                 "--quiet")
    assert result.exit_code == 0, result.output
    return folder, timing


def test_the_gate_refuses_another_model_under_the_same_label(latency_report):
    folder, timing = latency_report
    baseline = json.loads((folder / "base.json").read_text())
    baseline["models"][0]["params"] += 1
    baseline["models"][0]["plan_digest"] = "0" * 64
    (folder / "other.json").write_text(json.dumps(baseline))
    result = run("bench", "resnet56_cifar", "--backend", "torch-cpu", *timing, "--baseline", folder / "other.json")
    assert result.exit_code == 3 and "not the model the baseline measured" in error_line(result)


@pytest.mark.parametrize("breakage, words", [("infinity", "median"), ("duplicate", "twice")])
def test_the_gate_refuses_malformed_baselines(latency_report, breakage, words):
    folder, timing = latency_report
    baseline = json.loads((folder / "base.json").read_text())
    if breakage == "infinity":
        baseline["results"][0]["median_of_rounds_ms"] = float("inf")
    else:
        baseline["results"].append(dict(baseline["results"][0]))
    (folder / f"{breakage}.json").write_text(json.dumps(baseline))  # writes Infinity, as an editor might
    result = run("bench", "resnet56_cifar", "--backend", "torch-cpu", *timing, "--baseline", folder / f"{breakage}.json",
                 "--max-regression", "1000")
    assert result.exit_code == 3 and words in error_line(result)


# --- training: a resume keeps its settings; a diverging run stops and keeps its checkpoint ---

def test_resume_with_other_settings_is_refused_unless_overridden(tmp_path):
    common = ("finetune", "resnet56_cifar", "--data", "demo", "--out", tmp_path / "run", "--steps-per-epoch", "2",
              "--batch-size", "16", "--quiet")
    assert run(*common, "--epochs", "1").exit_code == 0
    refused = run(*common, "--epochs", "2", "--lr", "0.01", "--resume")
    assert refused.exit_code == 3 and "lr 0.05 -> 0.01" in error_line(refused)
    accepted = run(*common, "--epochs", "2", "--lr", "0.01", "--resume", "--override")
    assert accepted.exit_code == 0, accepted.output
    last = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["resume_overrides"]["lr"] == [0.05, 0.01] and last["epoch"] == 2


def test_a_diverging_fine_tune_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    factory = tmp_path / "unstable.py"
    factory.write_text(
        "import torch\n\n"
        "class Unstable(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),\n"
        "                                        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 10))\n"
        "        self.calls = 0\n\n"
        "    def forward(self, x):\n"
        "        self.calls += int(self.training)\n"
        "        out = self.body(x)\n"
        "        return out * float('nan') if self.calls > 2 else out\n\n"
        "def unstable():\n"
        "    return Unstable()\n")
    out = tmp_path / "run"
    result = run("finetune", f"{factory}:unstable", "--input-size", "32", "--data", "demo", "--out", out,
                 "--epochs", "3", "--steps-per-epoch", "2", "--batch-size", "16", "--quiet")
    assert result.exit_code == 3 and "the loss became nan at epoch 2, step 1" in error_line(result)
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1
