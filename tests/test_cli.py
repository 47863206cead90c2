"""The CLI: one clear line and docs/design.md's exit codes on bad input; nothing half-written."""

from __future__ import annotations

import json
import re

import pytest
import torch
from typer.testing import CliRunner

import foadx
from foadx_cli.app import app

runner = CliRunner()
# progress in a non-terminal: 'foadx: <stage> <done>[/<total>][, detail] (<seconds> s)'
PROGRESS_LINE = re.compile(r"^foadx: (?!error: |warning: ).* \(\d+ s\)$")


def run(*args: str):
    return runner.invoke(app, list(args))


def error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip() and not PROGRESS_LINE.match(line)]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("foadx: error: ")
    assert "Traceback" not in result.output
    return lines[0]


def test_version_and_models():
    assert run("--version").output.strip() == f"foadx {foadx.__version__}"
    listed = json.loads(run("models", "--json").output)
    assert [row["name"] for row in listed] == ["mobilefacenet", "vgg16_cifar", "resnet56_cifar", "mbf", "iresnet18",
                                              "iresnet34", "iresnet50", "iresnet100"]


def test_inspect_json():
    info = json.loads(run("inspect", "resnet56_cifar", "--json").output)
    assert info["params"] == 853_018
    assert sum(g["default"] for g in info["groups"]) == 27


def test_prune_json_report_and_artifact(tmp_path):
    result = run("prune", "vgg16_cifar", "--data", "demo", "--images", "16", "--ratio", "0.5",
                 "--out", str(tmp_path / "vgg"), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["params"]["after"] < report["params"]["before"]
    assert report["weights_bytes"]["file"] == (tmp_path / "vgg" / "weights.pt").stat().st_size
    loaded = foadx.load_pruned(tmp_path / "vgg")
    assert sum(p.numel() for p in loaded.parameters()) == report["params"]["after"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["prune", "nosuchnet"], 3, "unknown model"),
        (["prune", "vgg16_cifar", "--ratio", "1.5"], 3, "ratio must be in (0, 1)"),
        (["prune", "vgg16_cifar", "--ratio", "0.5", "--round-to", "0"], 3, "--round-to must be >= 1"),
        (["prune", "vgg16_cifar", "--ratio", "0.5", "--weights", "/nonexistent.pt"], 3, "weights file not found"),
        (["prune", "vgg16_cifar", "--ratio", "0.5", "--data", "/nonexistent"], 3, "calibration data not found"),
        (["prune", "vgg16_cifar", "--ratio", "0.5", "--device", "cuda"], 6, "GPU"),
        (["prune", "mobilefacenet", "--flops-target", "0.6", "--t", "1"], 3, "t = 1 reaches at most"),
    ],
)
def test_bad_input(tmp_path, args, code, message):
    if "--data" not in args:
        args = args + ["--data", "demo", "--images", "8"]
    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    result = run(*args, "--out", str(tmp_path / "out"))
    assert result.exit_code == code, result.output
    assert message in error_line(result)
    assert not (tmp_path / "out").exists()


def test_failure_leaves_existing_artifact_intact(tmp_path):
    out = tmp_path / "art"
    assert run("prune", "resnet56_cifar", "--data", "demo", "--images", "8", "--ratio", "0.5",
               "--out", str(out), "--quiet").exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    failed = run("prune", "resnet56_cifar", "--data", "demo", "--images", "8", "--ratio", "0.5",
                 "--weights", str(out / "plan.json"), "--out", str(out))
    assert failed.exit_code == 3
    assert "cannot read weights" in error_line(failed)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_mismatched_weights_name_the_keys(tmp_path):
    torch.save(foadx.build_model("resnet56_cifar", num_classes=100).state_dict(), tmp_path / "w.pt")
    result = run("prune", "resnet56_cifar", "--data", "demo", "--ratio", "0.5",
                 "--weights", str(tmp_path / "w.pt"), "--out", str(tmp_path / "o"))
    assert result.exit_code == 3
    assert "shape mismatch: fc.weight" in error_line(result)


def test_missing_output_folders_are_created(tmp_path):
    """The README's first prune command works in a fresh folder."""
    out = tmp_path / "a" / "b"
    result = run("prune", "resnet56_cifar", "--data", "demo", "--images", "8", "--ratio", "0.5", "--out", str(out), "--quiet")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["plan.json", "weights.pt"]
