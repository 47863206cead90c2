"""Zoo sizes against the papers and against independent formula counts."""

from __future__ import annotations

import pytest
import torch

import foadx
from foadx.errors import UnknownModelError, WeightsError
from foadx.pruning.cost import count_cost


def vgg16_cifar_formula() -> tuple[int, int]:
    widths = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    sides = [32, 32, 16, 16, 8, 8, 8, 4, 4, 4, 2, 2, 2]  # conv output side (pools after 2, 4, 7, 10)
    params = macs = 0
    in_c = 3
    for width, side in zip(widths, sides):
        params += 9 * in_c * width + 2 * width
        macs += 9 * in_c * width * side * side
        in_c = width
    return params + 512 * 10 + 10, macs + 512 * 10


def test_mobilefacenet_matches_the_paper_table():
    model = foadx.build_model("mobilefacenet")
    cost = count_cost(model, torch.zeros(1, 3, 112, 112))
    assert cost.params == 1_003_136
    assert cost.macs == 220_965_376
    assert model(torch.zeros(2, 3, 112, 112)).shape == (2, 128)


def test_mobilefacenet_112x96_and_embedding_size():
    model = foadx.build_model("mobilefacenet", (112, 96), embedding_size=256).eval()
    assert model.gdconv.conv.kernel_size == (7, 6)
    assert model(torch.zeros(2, 3, 112, 96)).shape == (2, 256)


def test_vgg16_cifar_size():
    cost = count_cost(foadx.build_model("vgg16_cifar"), torch.zeros(1, 3, 32, 32))
    assert (cost.params, cost.macs) == vgg16_cifar_formula()
    assert round(cost.params / 1e6, 2) == 14.72 and round(cost.macs / 1e6, 1) == 313.2


def test_resnet56_cifar_size():
    model = foadx.build_model("resnet56_cifar")
    cost = count_cost(model, torch.zeros(1, 3, 32, 32))
    convs = 9 * 3 * 16 + sum(9 * (cin * w + w * w) for cin, w in
                             [(16, 16)] * 9 + [(16, 32)] + [(32, 32)] * 8 + [(32, 64)] + [(64, 64)] * 8)
    bns = 2 * 16 + sum(2 * 2 * w for w in [16] * 9 + [32] * 9 + [64] * 9)
    assert cost.params == convs + bns + 64 * 10 + 10
    assert round(cost.params / 1e6, 2) == 0.85 and round(cost.macs / 1e6) == 125


def test_unknown_model_and_factories(tmp_path):
    with pytest.raises(UnknownModelError, match="unknown model"):
        foadx.build_model("mobilefacenett")
    with pytest.raises(UnknownModelError, match="torchvision has no"):
        foadx.build_model("torchvision:resnet1000")
    factory = tmp_path / "net.py"
    factory.write_text("import torch\ndef tiny():\n    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))\n")
    model = foadx.build_model(f"{factory}:tiny", (16, 16))
    assert model(torch.zeros(1, 3, 16, 16)).shape == (1, 4, 14, 14)
    assert foadx.build_model("torchvision:resnet18").fc.out_features == 1000


def test_weights_load_map_and_mismatch(tmp_path):
    source = foadx.build_model("resnet56_cifar")
    renamed = {f"net.{key}": value for key, value in source.state_dict().items()}
    checkpoint = tmp_path / "ckpt.pt"
    torch.save({"state_dict": renamed}, checkpoint)
    target = foadx.build_model("resnet56_cifar")
    with pytest.raises(WeightsError, match="missing: conv1.weight"):
        foadx.load_weights(target, checkpoint)
    foadx.load_weights(target, checkpoint, [(r"^net\.", "")])
    assert torch.equal(target.fc.weight, source.fc.weight)
    with pytest.raises(WeightsError, match="shape mismatch: fc.weight"):
        foadx.load_weights(foadx.build_model("resnet56_cifar", num_classes=100), checkpoint, [(r"^net\.", "")])
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read weights"):
        foadx.load_weights(target, corrupt)
