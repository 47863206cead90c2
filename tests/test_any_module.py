"""Any nn.Module prunes, exports and verifies: the input contract is read off the calibration
images, and only writing an artifact needs a spec to rebuild the architecture from."""

from __future__ import annotations

import onnx
import pytest
import torch
import torchvision
from torch import nn

import foadx
from foadx.errors import ArtifactError
from foadx.export import metadata_of
from foadx.provenance import ModelSource, Plan
from foadx.resolve import as_ref


def _widths(model: nn.Module) -> dict[str, int]:
    return {name: module.out_channels if isinstance(module, nn.Conv2d) else module.out_features
            for name, module in model.named_modules() if isinstance(module, (nn.Conv2d, nn.Linear))}


def _export_and_verify(model: nn.Module, path) -> onnx.ModelProto:
    foadx.export_onnx(model, path, opset=17, verify=False)  # the legacy exporter: seconds faster
    report = foadx.verify_onnx(path, model)  # a real onnxruntime session against torch
    assert report.parity_passed and report.cases, report
    return onnx.load(str(path))


@pytest.mark.parametrize("build, criterion", [
    (lambda: torchvision.models.resnet18(num_classes=10), "foad"),
    (lambda: torchvision.models.mobilenet_v3_small(num_classes=10), "l1"),
    (lambda: torchvision.models.regnet_x_400mf(num_classes=10), "l1"),  # FOAD on regnet took ~20 s here (2 shared cores)
], ids=["resnet18", "mobilenet_v3_small", "regnet_x_400mf"])
def test_torchvision_models_built_directly_prune_export_and_verify(build, criterion, tmp_path):
    torch.manual_seed(0)
    model = build().eval()
    images = torch.randn(4, 3, 32, 32)
    result = foadx.prune(model, images, criterion=criterion, ratio=0.5)
    before, after = _widths(model), _widths(result.model)
    assert foadx.provenance_of(model) is None  # the user's module is left as it was
    assert sum(after.values()) < sum(before.values())
    for group in result.plan.groups:  # every cut group keeps exactly max(1, C - floor(C/2)) channels
        assert after[group.name] == len(group.kept) == group.channels - group.channels // 2
    assert result.plan.model.input_chw == (3, 32, 32) and not result.plan.model.rebuildable
    exported = _export_and_verify(result.model, tmp_path / "m.onnx")
    dims = [d.dim_value for d in exported.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1:] == [3, 32, 32]
    with pytest.raises(ArtifactError, match="source=ModelSource"):
        result.save(tmp_path / "artifact")


class Grayscale(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 16, 3), nn.BatchNorm2d(16), nn.ReLU(),
                                      nn.Conv2d(16, 24, 3), nn.BatchNorm2d(24), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(24, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def test_a_grayscale_module_carries_one_channel_into_the_onnx_file(tmp_path):
    torch.manual_seed(0)
    images = torch.randn(6, 1, 28, 20)
    result = foadx.prune(Grayscale().eval(), images, ratio=0.5)
    source = result.plan.model
    assert source.input_chw == (1, 28, 20) and source.mean == (0.0,) and source.std == (1.0,)
    assert _widths(result.model) == {"features.0": 8, "features.3": 12, "head.2": 4}
    assert as_ref(result.model).input_chw == (1, 28, 20)
    exported = _export_and_verify(result.model, tmp_path / "gray.onnx")
    assert [d.dim_value for d in exported.graph.input[0].type.tensor_type.shape.dim][1:] == [1, 28, 20]
    assert metadata_of(exported)["input_shape"][1:] == [1, 28, 20]
    assert result.report["input_shape"] == [1, 28, 20]


def test_a_named_source_makes_an_in_memory_module_saveable(tmp_path):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    source = ModelSource("torchvision:resnet18", (64, 64), {"num_classes": 10})
    result = foadx.prune(model, torch.randn(4, 3, 64, 64), criterion="l1", ratio=0.5, source=source)
    result.save(tmp_path / "p")
    loaded = foadx.load_pruned(tmp_path / "p", device="cpu")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), result.model(x))


def test_plans_without_an_input_channel_count_read_as_rgb_and_keep_their_digest():
    old = {"spec": "mobilefacenet", "input_size": [112, 112]}
    source = ModelSource.from_json(old)
    assert source.input_chw == (3, 112, 112) and source.rebuildable
    # RGB writes no key, so a plan (and the plan digest an ONNX file recorded) from before the key is unchanged
    assert "input_channels" not in source.to_json() and "rebuildable" not in source.to_json()
    plan = Plan.empty(source)
    assert Plan.from_json(plan.to_json()).digest() == plan.digest()
    gray = ModelSource.in_memory("Grayscale", (1, 28, 20))
    assert gray.to_json()["input_channels"] == 1 and ModelSource.from_json(gray.to_json()) == gray


def test_a_source_naming_another_architecture_is_refused_before_anything_is_written(tmp_path):
    """A pruned resnet18 declared as torchvision:resnet34 would save, then never load."""
    images = torch.randn(4, 3, 64, 64)
    result = foadx.prune(torchvision.models.resnet18(num_classes=10), images, ratio=0.3, criterion="l1",
                         source=ModelSource("torchvision:resnet34", (64, 64), {"num_classes": 10}))
    with pytest.raises(ArtifactError, match="is not what torchvision:resnet34 builds") as refused:
        result.save(tmp_path / "a")
    assert "\n" not in str(refused.value) and not (tmp_path / "a").exists()
