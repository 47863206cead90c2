"""What a new user tripped over (issue 28): options that were silently ignored or overridden."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_helpers import error_line, run

TRTEXEC_LOGS = Path(__file__).parent / "fixtures" / "trtexec"


def test_a_trtexec_logs_batch_is_its_own_and_a_different_batch_asked_for_is_refused(tmp_path):
    jetson = TRTEXEC_LOGS / "trt84_jetson.log"  # trtexec ran it with --batch=16
    assert run("bench", "--trtexec-log", jetson, "--report", tmp_path / "r.json", "--quiet").exit_code == 0
    assert json.loads((tmp_path / "r.json").read_text())["results"][0]["batch"] == 16
    assert run("bench", "--trtexec-log", jetson, "--batch", "16", "--quiet").exit_code == 0
    refused = run("bench", "--trtexec-log", jetson, "--batch", "1", "--report", tmp_path / "s.json")
    assert refused.exit_code == 3 and "measured batch 16, not the batch 1" in error_line(refused)
    assert not (tmp_path / "s.json").exists()
    assert run("bench", "--trtexec-log", jetson, "--batch", "1,16").exit_code == 3


def test_weights_given_to_bench_with_no_model_spec_are_refused_not_ignored(tmp_path):
    onnx_file = tmp_path / "m.onnx"
    assert run("export", "resnet56_cifar", "--out", onnx_file, "--quiet").exit_code == 0
    result = run("bench", onnx_file, "--weights", tmp_path / "foo.pt", "--quiet")
    assert result.exit_code == 3 and "--weights apply to model specs" in error_line(result)


def test_finetune_on_data_serving_both_tasks_trains_the_models_own_task(tmp_path):
    # the demo digits serve both tasks; MobileFaceNet outputs a face embedding, so it trains as a face model
    tuned = tmp_path / "tuned"
    result = run("finetune", "mobilefacenet", "--input-size", "32", "--data", "demo", "--out", tuned,
                 "--steps-per-epoch", "2", "--batch-size", "8", "--quiet")
    assert result.exit_code == 0, result.output
    assert json.loads((tuned / "plan.json").read_text())["finetune"]["config"]["task"] == "face"


def test_a_classifier_is_refused_for_the_insightface_target_before_anything_is_written(tmp_path):
    out = tmp_path / "pkg" / "m.onnx"
    result = run("export", "resnet56_cifar", "--target", "insightface", "--out", out)
    assert result.exit_code == 3 and "a face embedding, not class logits (task classify)" in error_line(result)
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_int8_calibration_data_that_cannot_be_read_is_refused_before_the_export(tmp_path):
    out = tmp_path / "m.onnx"
    result = run("export", "resnet56_cifar", "--precision", "int8", "--calib-data", tmp_path / "faces", "--out", out)
    assert result.exit_code == 3 and "faces" in error_line(result)
    assert not out.exists()


@pytest.mark.serial  # counts heartbeat lines against a clock
def test_a_step_that_reports_nothing_still_prints_a_line_each_interval_where_stderr_is_not_a_terminal(
        monkeypatch, capsys):
    import time

    from cli_helpers import PROGRESS_LINE
    from foadx_cli import render

    monkeypatch.setattr(render._LineProgress, "interval_s", 0.1)
    with render.status("profiling", enabled=True):
        time.sleep(0.55)  # a step with no hook of its own: only the heartbeat speaks
    lines = capsys.readouterr().err.splitlines()
    assert 3 <= len(lines) <= 6 and all(PROGRESS_LINE.match(line) for line in lines), lines
    assert lines[0] == "foadx: profiling, still working (0 s)"
    with render.staged_progress(enabled=True) as advance:
        advance("measuring", 1, 4)
        time.sleep(0.25)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "foadx: measuring 1/4 (0 s)" and lines[1] == "foadx: measuring 1/4, still working (0 s)"


def test_threads_set_where_compute_runs_and_out_of_range_is_refused(tmp_path):
    import torch

    tiny = f"{Path(__file__).parent / 'fixtures' / 'tiny_net.py'}:tiny_net"
    before = torch.get_num_threads()
    try:
        result = run("prune", tiny, "--input-size", "16", "--data", "demo", "--images", "8", "--ratio", "0.5",
                     "--threads", "1", "--out", tmp_path / "p", "--quiet")
        assert result.exit_code == 0, result.output
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    for command in (("prune", tiny, "--data", "demo", "--ratio", "0.5", "--out", tmp_path / "q"),
                    ("finetune", tiny, "--data", "demo", "--out", tmp_path / "r"),
                    ("profile", tiny, "--out", tmp_path / "t.json"),
                    ("run", tmp_path / "none.toml")):
        refused = run(*command, "--threads", "0")
        assert refused.exit_code == 3 and "--threads must be >= 1" in error_line(refused), command


def test_every_public_name_resolves_and_load_images_prepares_what_the_model_takes():
    import torch

    import foadx

    for name in foadx.__all__:
        assert getattr(foadx, name) is not None, name
    model = foadx.build_model("mobilefacenet", (32, 32))
    images = foadx.load_images("demo", model, 6, seed=1)
    assert images.shape == (6, 3, 32, 32) and images.dtype == torch.float32
    # the digits are grey, replicated into RGB, then (x - 0.5) / 0.5 per channel: equal channels in [-1, 1]
    assert torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 1], images[:, 2])
    assert images.min() >= -1 and images.max() <= 1 and images.std() > 0.1
    assert torch.equal(images, foadx.load_images("demo", model, 6, seed=1))
    result = foadx.prune(model, images, ratio=0.25)
    assert result.model(images).shape == model(images).shape


def test_an_export_never_lands_inside_the_artifact_it_exports(tmp_path):
    tiny = f"{Path(__file__).parent / 'fixtures' / 'tiny_net.py'}:tiny_net"
    artifact = tmp_path / "p"
    assert run("prune", tiny, "--input-size", "16", "--data", "demo", "--images", "8", "--ratio", "0.5",
               "--out", artifact, "--quiet").exit_code == 0
    weights = (artifact / "weights.pt").read_bytes()
    for target in (artifact / "weights.pt", artifact / "plan.json", artifact / "m.onnx"):
        result = run("export", artifact, "--trust-code", "--out", target)
        assert result.exit_code == 3 and "is, or lies inside," in error_line(result), target
    assert (artifact / "weights.pt").read_bytes() == weights and not (artifact / "m.onnx").exists()


def test_eval_refuses_a_classifier_with_fewer_scores_than_the_data_has_classes(tmp_path):
    tiny = f"{Path(__file__).parent / 'fixtures' / 'tiny_net.py'}:tiny_net"  # 4 classes; the digits have 10
    result = run("eval", tiny, "--input-size", "16", "--data", "demo")
    assert result.exit_code == 3
    assert "the model outputs 4 scores per image, and the data has 10 classes" in error_line(result)


class _NotATensor:
    pass


def test_a_checkpoint_with_objects_is_refused_without_advising_the_unsafe_loader(tmp_path):
    import torch

    from foadx.errors import WeightsError
    from foadx.models.registry import read_state_dict

    torch.save({"weight": _NotATensor()}, tmp_path / "w.pt")
    with pytest.raises(WeightsError) as refused:
        read_state_dict(tmp_path / "w.pt")
    assert "holds objects other than tensors, and foadx never unpickles code" in str(refused.value)
    assert "weights_only" not in str(refused.value)
    (tmp_path / "t.pt").write_bytes((tmp_path / "w.pt").read_bytes()[:40])  # truncated
    with pytest.raises(WeightsError, match="not a readable PyTorch checkpoint"):
        read_state_dict(tmp_path / "t.pt")
