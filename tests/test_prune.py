"""Structure: groups, surgery, independent cost counts, budgets, artifacts, torchvision models."""

from __future__ import annotations

import copy
import json

import pytest
import torch

import foadx
from foadx.errors import ArtifactError, BudgetError
from foadx.models.mobilefacenet import BOTTLENECK_SETTINGS
from foadx.pruning import inspect_model
from foadx.pruning.cost import count_cost


def mobilefacenet_formula(stem: int, hidden: list[int], head: int, embedding: int = 128) -> tuple[int, int]:
    """Params and conv MACs of MobileFaceNet at 112x112 from its widths, by hand."""
    params = 27 * stem + 3 * stem + 9 * stem + 3 * stem  # stem conv + BN + PReLU, stem dw
    macs = 56 * 56 * stem * 27 + 56 * 56 * stem * 9
    side, in_c, index = 56, stem, 0
    for _t, out_c, repeats, stride in BOTTLENECK_SETTINGS:
        for r in range(repeats):
            h = hidden[index]
            out_side = side // (stride if r == 0 else 1)
            params += in_c * h + 3 * h + 9 * h + 3 * h + h * out_c + 2 * out_c
            macs += side * side * in_c * h + out_side * out_side * (9 * h + h * out_c)
            side, in_c, index = out_side, out_c, index + 1
    params += 128 * head + 3 * head + 49 * head + 2 * head + head * embedding + 2 * embedding
    macs += 49 * 128 * head + 49 * head + head * embedding
    return params, macs


def mobilefacenet_widths(model) -> tuple[int, list[int], int]:
    return (model.stem.conv.out_channels, [b.expand.conv.out_channels for b in model.blocks],
            model.head.conv.out_channels)


def test_formula_reproduces_the_paper_count():
    full_hidden = [64 * 2] * 5 + [64 * 4] + [128 * 2] * 6 + [128 * 4] + [128 * 2] * 2
    assert mobilefacenet_formula(64, full_hidden, 512) == (1_003_136, 220_965_376)


def test_mobilefacenet_default_groups(mobilefacenet, digits_112):
    info = inspect_model(mobilefacenet, digits_112[:2])
    default = [g["name"] for g in info["groups"] if g["default"]]
    assert default == ["stem.conv"] + [f"blocks.{i}.expand.conv" for i in range(15)] + ["head.conv"]
    coupled = [g for g in info["groups"] if g["coupled"]]
    assert [g["channels"] for g in coupled] == [64, 128, 128]
    assert info["output_layers"] == ["embedding.conv"]


def test_ratio_prunes_to_planned_widths_with_independent_count(mobilefacenet, digits_112):
    result = foadx.prune(mobilefacenet, digits_112, ratio=0.6, batch_size=8)
    stem, hidden, head = mobilefacenet_widths(result.model)
    assert stem == 64 - int(0.6 * 64)
    assert hidden == [c - int(0.6 * c) for c in [128] * 5 + [256] + [256] * 6 + [512] + [256] * 2]
    assert head == 512 - int(0.6 * 512)
    params, macs = mobilefacenet_formula(stem, hidden, head)
    assert (result.report["params"]["after"], result.report["macs"]["after"]) == (params, macs)
    assert count_cost(result.model, digits_112).params == params
    assert result.model(digits_112).shape == (16, 128)
    assert sum(p.numel() for p in mobilefacenet.parameters()) == 1_003_136  # original untouched


def test_surgery_keeps_exactly_the_planned_channels(mobilefacenet, digits_112):
    """Silence the removed channels in the original: the pruned net must then agree with it."""
    result = foadx.prune(mobilefacenet, digits_112, ratio=0.5, batch_size=8)
    reference = copy.deepcopy(mobilefacenet)
    modules = dict(reference.named_modules())
    consumers = {"stem.conv": ["blocks.0.expand.conv"], "head.conv": ["embedding.conv"]}
    consumers.update({f"blocks.{i}.expand.conv": [f"blocks.{i}.project.conv"] for i in range(15)})
    for group in result.plan.to_json()["groups"]:
        removed = sorted(set(range(group["channels"])) - set(group["kept"]))
        for consumer in consumers[group["name"]]:
            with torch.no_grad():
                modules[consumer].weight[:, removed] = 0.0
    pruned_out, full_out = result.model(digits_112), reference(digits_112)
    torch.testing.assert_close(pruned_out, full_out, rtol=1e-4, atol=1e-5)
    stem, first = result.plan.to_json()["groups"][0], result.plan.to_json()["groups"][1]
    assert (stem["name"], first["name"]) == ("stem.conv", "blocks.0.expand.conv")
    expected = mobilefacenet.blocks[0].expand.conv.weight[first["kept"]][:, stem["kept"]]
    torch.testing.assert_close(result.model.blocks[0].expand.conv.weight, expected)


def test_flops_target_chooses_t_and_reaches_the_paper_budget(mobilefacenet, digits_112):
    result = foadx.prune(mobilefacenet, digits_112, flops_target=0.636, batch_size=8)
    assert result.report["macs"]["reduction"] >= 0.636
    t = result.report["t"]
    assert t >= 2
    assert result.plan.parameters["t"] == t
    # A larger s would keep more: the found s is the largest that still meets the target.
    denser = foadx.prune(mobilefacenet, digits_112, t=t, s=min(1.0, result.report["s"] + 1e-3), batch_size=8)
    assert denser.report["macs"]["reduction"] < 0.636


def test_unreachable_target_names_the_t_that_would(mobilefacenet, digits_112):
    with pytest.raises(BudgetError, match=r"t = 1 reaches at most .* t = \d+ would"):
        foadx.prune(mobilefacenet, digits_112, flops_target=0.6, t=1, batch_size=8)


def test_round_to_aligns_widths(mobilefacenet, digits_112):
    result = foadx.prune(mobilefacenet, digits_112, ratio=0.66, round_to=8, batch_size=8)
    for group in result.report["groups"]:
        if group["pruned"]:
            assert group["after"] % 8 == 0 or group["after"] == group["before"]
    with pytest.raises(BudgetError):
        foadx.prune(mobilefacenet, digits_112, ratio=0.5, round_to=0)


def test_bad_budgets(mobilefacenet, digits_112):
    for kwargs in ({"ratio": 0.0}, {"ratio": 1.0}, {"ratio": 0.3, "flops_target": 0.5},
                   {"criterion": "l1"}, {"ratios": {"stem.conv": 1.5}}):
        with pytest.raises(BudgetError):
            foadx.prune(mobilefacenet, digits_112, **kwargs)


def test_ratios_file_semantics(mobilefacenet, digits_112):
    result = foadx.prune(mobilefacenet, digits_112, ratios={"head.conv": 0.75}, batch_size=8)
    widths = {g["name"]: g["after"] for g in result.report["groups"]}
    assert widths["head.conv"] == 128 and widths["stem.conv"] == 64


def test_coupled_groups_keep_residual_adds_consistent(mobilefacenet, digits_112):
    result = foadx.prune(mobilefacenet, digits_112, ratio=0.5, include_coupled=True, batch_size=8)
    coupled = [g for g in result.plan.to_json()["groups"] if g["coupled"]]
    assert [g["channels"] for g in coupled] == [64, 128, 128]
    kept64 = coupled[0]["kept"]
    hidden = {g["name"]: g["kept"] for g in result.plan.to_json()["groups"]}
    for index in range(5):
        project = result.model.blocks[index].project.conv
        assert project.out_channels == 32
        original = mobilefacenet.blocks[index].project.conv.weight
        expected = original[kept64][:, hidden[f"blocks.{index}.expand.conv"]]
        torch.testing.assert_close(project.weight, expected)
    assert result.model.blocks[1].residual and result.model.blocks[1].expand.conv.in_channels == 32
    assert result.model(digits_112).shape == (16, 128)


def test_resnet56_never_gains_layers_and_skips_padding_shortcut(digits_32):
    model = foadx.build_model("resnet56_cifar").eval()
    names_before = [name for name, _ in model.named_modules()]
    result = foadx.prune(model, digits_32, ratio=0.5, include_coupled=True)
    assert [name for name, _ in result.model.named_modules()] == names_before
    notes = [g for g in result.report["groups"] if g["note"]]
    assert notes and all(not g["pruned"] for g in notes)
    assert all(result.model.layers[i].conv1.out_channels == result.model.layers[i].conv2.in_channels
               for i in range(27))
    assert result.model(digits_32).shape == (16, 10)


def test_vgg_all_thirteen_convs_and_baselines(digits_32):
    model = foadx.build_model("vgg16_cifar").eval()
    for criterion in ("foad", "l1", "random", "hrank"):
        result = foadx.prune(model, digits_32, ratio=0.5, criterion=criterion)
        assert [g["after"] for g in result.report["groups"]] == [w - w // 2 for w in
            (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)]
        assert result.model(digits_32).shape == (16, 10)


def test_l1_keeps_largest_filters(digits_32):
    model = foadx.build_model("vgg16_cifar").eval()
    result = foadx.prune(model, digits_32, ratio=0.5, criterion="l1")
    norms = model.features[0].conv.weight.abs().sum(dim=(1, 2, 3))
    expected = sorted(torch.argsort(norms, descending=True, stable=True)[:32].tolist())
    assert result.plan.to_json()["groups"][0]["kept"] == expected


def test_same_seed_same_plan(mobilefacenet, digits_112):
    first = foadx.prune(mobilefacenet, digits_112, t=2, s=0.3, batch_size=8)
    second = foadx.prune(mobilefacenet, digits_112, t=2, s=0.3, batch_size=16)
    assert first.plan.to_json()["groups"] == second.plan.to_json()["groups"]


def test_artifact_round_trip(tmp_path, mobilefacenet, digits_112):
    result = foadx.prune(mobilefacenet, digits_112, ratio=0.4, recalibrate_bn=True, batch_size=8)
    result.save(tmp_path / "art")
    loaded = foadx.load_pruned(tmp_path / "art", device="cpu")
    assert torch.equal(loaded(digits_112), result.model(digits_112))
    plan = json.loads((tmp_path / "art" / "plan.json").read_text())
    assert plan["model"]["spec"] == "mobilefacenet" and plan["criterion"] == "foad"
    # BN statistics were re-estimated (they differ from the unpruned network's defaults).
    assert not torch.allclose(loaded.head.bn.running_var, torch.ones_like(loaded.head.bn.running_var))


def test_corrupt_artifacts_are_refused(tmp_path, mobilefacenet, digits_112):
    result = foadx.prune(mobilefacenet, digits_112, ratio=0.4, batch_size=8)
    result.save(tmp_path / "art")
    with pytest.raises(ArtifactError, match="no plan.json"):
        foadx.load_pruned(tmp_path)
    (tmp_path / "art" / "weights.pt").write_bytes(b"\x00" * 10)
    with pytest.raises(ArtifactError, match="cannot read weights"):
        foadx.load_pruned(tmp_path / "art")
    (tmp_path / "art" / "plan.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="corrupt"):
        foadx.load_pruned(tmp_path / "art")


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_torchvision_models_prune_and_run(name):
    model = foadx.build_model(f"torchvision:{name}").eval()
    images = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    result = foadx.prune(model, images, ratio=0.5)
    assert result.report["params"]["after"] < result.report["params"]["before"]
    assert result.report["params"]["after"] == sum(p.numel() for p in result.model.parameters())
    assert result.model(images).shape == (4, 1000)


def test_cost_model_predicts_the_built_network(mobilefacenet, digits_112):
    from foadx.pruning.cost import CostModel
    from foadx.pruning.groups import build_dependency_graph, discover_groups

    graph = build_dependency_graph(mobilefacenet, digits_112[:2])
    groups = discover_groups(mobilefacenet, graph, ["embedding.conv"])
    model = CostModel(mobilefacenet, [g for g in groups if g.unsupported is None], digits_112[:2])
    result = foadx.prune(mobilefacenet, digits_112, ratio=0.3, include_coupled=True, batch_size=8)
    predicted = model.evaluate({g["name"]: len(g["kept"]) for g in result.plan.to_json()["groups"]})
    actual = count_cost(result.model, digits_112)
    assert predicted == actual


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_plan_is_the_same_on_cpu_and_gpu(mobilefacenet, digits_112):
    cpu = foadx.prune(mobilefacenet, digits_112, flops_target=0.636, device="cpu")
    gpu = foadx.prune(mobilefacenet, digits_112, flops_target=0.636, device="cuda")
    assert cpu.plan.to_json()["groups"] == gpu.plan.to_json()["groups"]
