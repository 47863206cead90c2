"""One model reference, one plan, one comparator: each bug the redesign fixed, reproduced.

Every test here failed on the code before the redesign (noted per test), and each one drives
the real library, real files and real onnxruntime sessions.
"""

from __future__ import annotations

import json
import os
import stat
import time

import numpy as np
import onnx
import pytest
import torch
from cli_helpers import error_line as one_error_line
from cli_helpers import run

import foadx
from foadx.atomic import atomic_directory, write_json
from foadx.errors import ArtifactError, BadInputError
from foadx.export import export_onnx, metadata_of
from foadx.provenance import Plan, PlanGroup, provenance_of
from foadx.resolve import BuildOptions, resolve_model


@pytest.fixture(scope="module")
def pruned_resnet(digits_32):
    torch.manual_seed(0)
    return foadx.prune(foadx.build_model("resnet56_cifar"), digits_32, ratio=0.5)


@pytest.fixture(scope="module")
def artifact(pruned_resnet, tmp_path_factory):
    return pruned_resnet.save(tmp_path_factory.mktemp("structure") / "pruned")


# --- provenance: the plan travels with the pruned model (before: only load_pruned set it) ---

def test_exporting_prune_result_records_its_plan_digest(pruned_resnet, tmp_path):
    export_onnx(pruned_resnet.model, tmp_path / "p.onnx", opset=17, verify=False)
    digest = metadata_of(onnx.load(str(tmp_path / "p.onnx")))["plan_digest"]
    assert digest == pruned_resnet.plan.digest() != "unpruned"  # before: "unpruned"


def test_a_fine_tuned_prune_result_saves_an_artifact_that_loads(pruned_resnet, tmp_path):
    from foadx.data.labeled import open_labeled
    from foadx.train import FinetuneConfig
    from foadx.tasks.finetune import finetune_to_artifact

    model = pruned_resnet.model  # the in-process result itself: before, its saved plan was empty
    config = FinetuneConfig(epochs=1, lr=0.01, batch_size=16, steps_per_epoch=2, flip=False)
    finetune_to_artifact(model, open_labeled("demo", "train"), tmp_path / "tuned", config, {"data": "demo"})
    reloaded = foadx.load_pruned(tmp_path / "tuned", "cpu")  # before: "weights.pt does not fit its plan"
    plan = provenance_of(reloaded).plan
    assert plan.kept == pruned_resnet.plan.kept and plan.finetune["config"]["steps_per_epoch"] == 2
    for (name, a), b in zip(model.state_dict().items(), reloaded.state_dict().values()):
        assert torch.equal(a.cpu(), b), name
    assert sorted(p.name for p in (tmp_path / "tuned").iterdir()) == ["checkpoint.pt", "metrics.jsonl", "plan.json", "weights.pt"]


def test_plan_json_round_trip_and_validation(pruned_resnet):
    data = pruned_resnet.plan.to_json()
    assert Plan.from_json(json.loads(json.dumps(data))) == pruned_resnet.plan
    group = data["groups"][0]
    broken = [
        {**data, "groups": [{**group, "kept": [0, 0]}]},  # duplicate indices
        {**data, "groups": [{**group, "kept": [group["channels"]]}]},  # outside the width
        {**data, "groups": [{**group, "channels": "16"}]},
        {**data, "model": {**data["model"], "std": [0.2, 0.0, 0.2]}},  # std = 0
        {**data, "model": {**data["model"], "input_size": [32]}},
        {**data, "schema_version": 99},
    ]
    for plan in broken:
        with pytest.raises(ArtifactError):
            Plan.from_json(plan)
    assert PlanGroup.from_json({"name": "g", "channels": 4, "kept": [3, 1]}).kept == (1, 3)


def test_pruning_a_pruned_artifact_is_refused_up_front(artifact):
    started = time.perf_counter()
    result = run("prune", artifact, "--data", "demo", "--ratio", "0.3", "--out", artifact.parent / "again")
    assert result.exit_code == 3 and "already pruned" in one_error_line(result)
    assert time.perf_counter() - started < 10  # before: ~11 s of work, then "plan group does not match"
    assert not (artifact.parent / "again").exists()


# --- the resolver: every MODEL kind, the same way in every command ---

def test_the_resolver_names_each_kind(artifact, tmp_path):
    export_onnx(foadx.load_pruned(artifact, "cpu"), tmp_path / "m.onnx", opset=17, verify=False)
    kinds = {text: resolve_model(str(text)).kind for text in ("resnet56_cifar", artifact, tmp_path / "m.onnx")}
    assert list(kinds.values()) == ["spec", "artifact", "onnx"]
    onnx_ref = resolve_model(str(tmp_path / "m.onnx"))
    assert onnx_ref.input_chw == (3, 32, 32) and onnx_ref.source.spec == "resnet56_cifar"
    with pytest.raises(BadInputError, match="do not apply"):
        resolve_model(str(artifact), BuildOptions(input_size=(64, 64)))
    with pytest.raises(BadInputError, match="not a foadx artifact"):
        resolve_model(str(tmp_path))


def test_inspect_takes_artifacts_and_onnx_files(artifact, tmp_path):
    info = json.loads(run("inspect", artifact, "--json").output)
    assert info["kind"] == "artifact" and len(info["pruned_groups"]) == 27
    export_onnx(foadx.load_pruned(artifact, "cpu"), tmp_path / "m.onnx", opset=17, verify=False)
    described = json.loads(run("inspect", tmp_path / "m.onnx", "--json").output)
    assert described["kind"] == "onnx" and described["opset"] == 17 and described["input"] == ["input", 3, 32, 32]


def test_verify_against_a_spec_uses_the_files_recorded_source(tmp_path):
    digits = ("--input-size", "32", "--model-arg", "embedding_size=10")
    assert run("export", "mobilefacenet", *digits, "--out", tmp_path / "digits.onnx", "--quiet").exit_code == 0
    result = run("verify", tmp_path / "digits.onnx", "--against", "mobilefacenet", "--data", "none", "--quiet")
    assert result.exit_code == 0, result.output  # before: an internal RuntimeError (exit 1)


def test_torchvision_weights_argument_is_passed_once():
    model = foadx.build_model("torchvision:resnet18", (64, 64), weights=None)  # before: "multiple values"
    assert provenance_of(model).source.kwargs == {"weights": None}


# --- bench: files of every kind, honest precision, equal input sizes only ---

def test_bench_resolves_engines_and_needs_tensorrt_for_them(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"not really an engine")
    write_json(tmp_path / "m.engine.json", {"kind": "foadx.engine", "input": "input", "input_chw": [3, 32, 32]})
    result = run("bench", engine, "--backend", "trt")
    message = one_error_line(result)
    assert "unknown model" not in message  # before: the CLI took only *.onnx as files
    if not torch.cuda.is_available():
        assert result.exit_code == 6 and "TensorRT" in message


def test_backend_and_criterion_help_list_every_registered_name():
    from foadx.runtime import backend_names
    from foadx_cli.deploy_commands import BACKEND_HELP
    from foadx_cli.options import PROFILING_BACKEND_HELP
    from foadx_cli.prune_commands import CRITERION_HELP

    from foadx.pruning import CRITERIA
    from foadx.runtime import BACKENDS

    assert all(name in BACKEND_HELP for name in BACKENDS)  # before: "trt" was missing
    listed = BACKEND_HELP.split(" (")[0].replace(" or ", ", ").split(", ")
    assert tuple(listed) == backend_names()
    assert tuple(PROFILING_BACKEND_HELP.rstrip(".").replace(" or ", ", ").split(", ")) == backend_names(profiling=True)
    assert [part.split(":")[0].strip() for part in CRITERION_HELP.split(";")] == list(CRITERIA)


def test_engine_options_follow_the_bench_precision():
    from foadx.bench.run import engine_options_for
    from foadx.runtime import SessionOptions

    assert engine_options_for(SessionOptions(precision="fp32")).precision == "fp32"  # before: fp16
    assert engine_options_for(SessionOptions(precision="fp16")).precision == "fp16"


def test_bench_refuses_speedups_between_input_sizes(tmp_path):
    timing = ("--duration-s", "0.05", "--warmup-ms", "1", "--rounds", "1", "--min-iterations", "1")
    result = run("bench", "resnet56_cifar", "mobilefacenet", "--backend", "torch-cpu", *timing)
    assert result.exit_code == 3  # before: a speedup of 32x32 against 112x112
    assert "resnet56_cifar: 3x32x32, mobilefacenet: 3x112x112" in one_error_line(result)
    same = run("bench", "torchvision:resnet18", "mobilefacenet", "--input-size", "64", "--backend", "torch-cpu",
               *timing, "--json")
    assert same.exit_code == 0, same.output
    rows = json.loads(same.output)["results"]
    assert {tuple(row["input_shape"]) for row in rows} == {(1, 3, 64, 64)}


# --- files: permissions, missing folders, stale files, whole-folder replacement ---

def test_written_files_respect_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        write_json(tmp_path / "r.json", {"a": 1})
        with atomic_directory(tmp_path / "folder") as staging:
            (staging / "x").write_text("x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == 0o644  # before: 0600
    assert stat.S_IMODE((tmp_path / "folder").stat().st_mode) == 0o755


def test_prune_refuses_a_foreign_folder_and_replaces_it_whole_with_force(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"an earlier fine-tune's")
    (out / "metrics.jsonl").write_text("{}\n")
    args = ("prune", "resnet56_cifar", "--data", "demo", "--images", "8", "--ratio", "0.5", "--out", out, "--quiet")
    refused = run(*args)
    assert refused.exit_code == 3 and "--force" in one_error_line(refused)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "metrics.jsonl"]
    assert run(*args, "--force").exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == ["plan.json", "weights.pt"]  # before: stale files kept
    again = run(*args)  # its own earlier output: replaced without --force
    assert again.exit_code == 0 and sorted(p.name for p in out.iterdir()) == ["plan.json", "weights.pt"]
    assert not list(tmp_path.glob(".out.*.partial"))  # no staging folder left behind


def test_a_failed_folder_write_leaves_the_previous_folder(tmp_path):
    target = tmp_path / "art"
    target.mkdir()
    (target / "plan.json").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as staging:
            (staging / "plan.json").write_text("new")
            raise RuntimeError("killed mid-write")
    assert (target / "plan.json").read_text() == "old" and not list(tmp_path.glob(".art.*.partial"))


# --- the CLI surface: one-line usage errors, progress in logs, float options ---

def test_usage_errors_are_one_line():
    result = run("prune", "resnet56_cifar")
    assert result.exit_code == 2
    assert one_error_line(result) == "foadx: error: Missing option '--data'. (see 'foadx prune --help')"


def test_progress_is_visible_when_stderr_is_not_a_terminal(tmp_path):
    result = run("prune", "resnet56_cifar", "--data", "demo", "--images", "64", "--batch-size", "16", "--ratio", "0.5",
                 "--out", tmp_path / "p")
    assert result.exit_code == 0
    assert "foadx: calibration batches 4/4" in result.output  # the final line of the stage is always shown


def test_float_options_refuse_nan(artifact, tmp_path):
    result = run("prune", "resnet56_cifar", "--data", "demo", "--ratio", "nan", "--out", tmp_path / "n")
    assert result.exit_code == 3 and "finite" in one_error_line(result)


def test_image_folders_do_not_warn_about_read_only_arrays(tmp_path, recwarn):
    from PIL import Image

    from foadx.data import calibration_images

    folder = tmp_path / "images"
    folder.mkdir()
    for index in range(3):
        Image.fromarray(np.full((40, 40, 3), 60 * index, np.uint8)).save(folder / f"{index}.png")
    batch = next(iter(calibration_images(str(folder), 3, (32, 32), (0.5,) * 3, (0.5,) * 3)))
    assert batch.shape == (3, 3, 32, 32)
    assert not [w for w in recwarn if "not writable" in str(w.message)]


def test_a_model_foadx_did_not_build_prunes_but_is_not_saved_without_a_spec(digits_32, tmp_path):
    plain = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8 * 30 * 30, 2))
    result = foadx.prune(plain, digits_32, ratio=0.5)
    assert result.model[0].out_channels == 4 and plain[0].out_channels == 8
    source = result.plan.model
    assert not source.rebuildable and source.input_chw == (3, 32, 32) and source.mean == (0.0,) * 3
    started = time.perf_counter()
    with pytest.raises(ArtifactError, match="in-memory module with no spec") as refused:
        result.save(tmp_path / "out")
    assert "source=ModelSource(spec=" in str(refused.value) and "\n" not in str(refused.value)
    assert time.perf_counter() - started < 1.0 and not (tmp_path / "out").exists()  # refused before anything is written
