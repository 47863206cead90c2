"""--pretrained: torchvision's weight enums from the torch hub cache (written here), a clear
exit 6 where they are neither cached nor downloadable, and every report saying where the
weights came from (a random initialisation is named as such)."""

from __future__ import annotations

import json

import torch
import torchvision

from foadx.provenance import RANDOM_WEIGHTS
from tests.cli_helpers import run


def test_cached_weights_load_and_are_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub-home"))
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    cached = tmp_path / "hub-home" / "hub" / "checkpoints" / weights.url.rsplit("/", 1)[1]
    cached.parent.mkdir(parents=True)
    torch.manual_seed(3)
    state = torchvision.models.resnet18().state_dict()
    torch.save(state, cached)
    result = run("prune", "torchvision:resnet18", "--pretrained", "IMAGENET1K_V1", "--input-size", "64", "--data", "demo",
                 "--flops-target", "0.2", "--images", "32", "--out", tmp_path / "p", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["weights"] == "pretrained torchvision weights IMAGENET1K_V1"
    assert "random initialisation" not in result.output
    plan = json.loads((tmp_path / "p" / "plan.json").read_text())
    assert plan["model"]["kwargs"] == {"weights": "IMAGENET1K_V1"}


def test_weights_neither_cached_nor_downloadable_exit_6(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    result = run("inspect", "torchvision:resnet18", "--pretrained", "DEFAULT")
    assert result.exit_code == 6
    errors = [line for line in result.output.splitlines() if line.startswith("foadx: error: ")]
    assert len(errors) == 1 and errors[0].startswith(  # torch hub's own "Downloading: ..." line may precede it
        "foadx: error: torchvision:resnet18 weights 'DEFAULT' are not in the torch hub cache and cannot be downloaded")


def test_pretrained_is_refused_where_it_cannot_apply(tmp_path):
    zoo = run("inspect", "mobilefacenet", "--pretrained", "DEFAULT")
    assert zoo.exit_code == 3 and "give --weights FILE" in zoo.output
    unknown = run("inspect", "torchvision:resnet18", "--pretrained", "NOPE")
    assert unknown.exit_code == 3 and "e.g. IMAGENET1K_V1" in unknown.output
    torch.save({}, tmp_path / "w.pt")
    both = run("inspect", "torchvision:resnet18", "--pretrained", "DEFAULT", "--weights", tmp_path / "w.pt")
    assert both.exit_code == 3 and "not both" in both.output


def test_random_weights_are_named_in_the_prune_and_export_reports(tmp_path):
    pruned = run("prune", "resnet56_cifar", "--data", "demo", "--flops-target", "0.2", "--images", "32",
                 "--out", tmp_path / "p", "--report", tmp_path / "prune.json")
    assert pruned.exit_code == 0, pruned.output
    assert f"foadx: warning: the model's weights are a {RANDOM_WEIGHTS}" in pruned.output
    assert json.loads((tmp_path / "prune.json").read_text())["weights"] == RANDOM_WEIGHTS
    exported = run("export", tmp_path / "p", "--out", tmp_path / "p.onnx", "--json")
    assert json.loads(exported.output)["metadata"]["weights"] == RANDOM_WEIGHTS  # --json: in the report, no warning line
