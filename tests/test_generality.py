"""Pruning CNNs nobody here wrote: grouped convolutions cut by equal offsets in every group, and
ops the graph tracer cannot follow (ShuffleNet's channel shuffle) treated as barriers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import foadx
from foadx.pruning.groups import ChannelGroup
from foadx.pruning.offsets import OffsetSpace


def group(name: str, channels: int, channel_groups: int) -> ChannelGroup:
    return ChannelGroup(name, channels, (name,), (), coupled=False, channel_groups=channel_groups)


def test_offsets_by_hand():
    space = OffsetSpace([group("g", 4, 2), group("plain", 3, 1)])
    S = torch.tensor([[1.0, 0.2, 0.5, 0.6],
                      [0.2, 1.0, 0.7, 0.8],
                      [0.5, 0.7, 1.0, 0.4],
                      [0.6, 0.8, 0.4, 1.0]], dtype=torch.float64)
    folded = space.to_offsets({"g": S, "plain": torch.eye(3, dtype=torch.float64)}, by_similarity=True)
    # offsets j, j' in 0..1: mean of S[j, j'] (group 0) and S[2 + j, 2 + j'] (group 1)
    torch.testing.assert_close(folded["g"], torch.tensor([[1.0, 0.3], [0.3, 1.0]], dtype=torch.float64))
    scores = space.to_offsets({"g": torch.tensor([1.0, 2.0, 3.0, 6.0]), "plain": torch.ones(3)}, by_similarity=False)
    torch.testing.assert_close(scores["g"], torch.tensor([2.0, 4.0]))
    assert space.to_channels({"g": [1], "plain": [0, 2]}) == {"g": [1, 3], "plain": [0, 2]}
    assert OffsetSpace([group("a", 128, 32), group("b", 128, 2), group("c", 128, 64)]).steps(8) == \
        {"a": 1, "b": 4, "c": 1}  # lcm(32, 8)/32, lcm(2, 8)/2, lcm(64, 8)/64


class GroupedBlock(nn.Module):
    """1x1 -> grouped 3x3 (4 groups) -> 1x1, as in ResNeXt."""

    def __init__(self) -> None:
        super().__init__()
        self.reduce = nn.Sequential(nn.Conv2d(3, 16, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.grouped = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=4, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.expand = nn.Conv2d(16, 8, 1)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))

    def forward(self, x):
        return self.head(self.expand(self.grouped(self.reduce(x))))


def test_a_grouped_conv_loses_the_same_offsets_in_every_group(digits_32):
    import foadx.models.registry as registry

    torch.manual_seed(0)
    model = GroupedBlock().eval()
    registry.record_provenance(model, registry.Provenance(registry.Plan.empty(registry.ModelSource("test", (32, 32)))))
    for criterion in ("foad", "l1"):
        result = foadx.prune(model, digits_32, ratio=0.5, criterion=criterion)
        kept = result.plan.kept
        for name in ("reduce.0", "grouped.0"):
            per_group = [sorted(index % 4 for index in kept[name] if index // 4 == g) for g in range(4)]
            assert len(per_group[0]) == 2 and all(offsets == per_group[0] for offsets in per_group)
        assert result.model.grouped[0].groups == 4 and result.model.grouped[0].weight.shape == (8, 2, 3, 3)
        assert torch.isfinite(result.model(digits_32)).all()


@pytest.mark.parametrize("name", ["resnext50_32x4d", "regnet_x_400mf"])
def test_torchvision_grouped_models_prune_and_reload(name, digits_32, tmp_path):
    torch.manual_seed(0)
    model = foadx.build_model(f"torchvision:{name}", (32, 32)).eval()
    result = foadx.prune(model, digits_32[:2], ratio=0.3, round_to=8)
    for module in result.model.modules():
        if isinstance(module, nn.Conv2d) and module.groups > 1:
            assert module.in_channels % module.groups == 0 and module.out_channels % module.groups == 0
    output = result.model(digits_32[:2])
    assert output.shape == (2, 1000) and torch.isfinite(output).all()
    assert result.report["params"]["after"] < result.report["params"]["before"]
    reloaded = foadx.load_pruned(result.save(tmp_path / name), "cpu")
    torch.testing.assert_close(reloaded(digits_32[:2]), output)


def test_shufflenet_prunes_its_safe_groups_and_names_the_barriers(digits_32):
    torch.manual_seed(0)
    model = foadx.build_model("torchvision:shufflenet_v2_x0_5", (32, 32)).eval()
    result = foadx.prune(model, digits_32[:2], ratio=0.3)
    pruned = {g["name"] for g in result.report["groups"] if g["pruned"]}
    barriers = [g for g in result.report["groups"] if g["note"] and "barrier" in g["note"]]
    assert "stage2.1.branch2.0" in pruned and barriers
    output = result.model(digits_32[:2])
    assert output.shape == (2, 1000) and torch.isfinite(output).all()
    assert result.report["params"]["after"] < result.report["params"]["before"]
