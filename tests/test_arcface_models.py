"""insightface arcface_torch backbones: sizes from the architecture, strict loading of a state
dict in arcface_torch's key layout (written here by an independent enumerator), pruning."""

from __future__ import annotations

import pytest
import torch

import foadx
from foadx.errors import WeightsError
from tests.cli_helpers import error_line, run

# --- an independent description of arcface_torch's parameter layout: key -> shape ------------


def _conv(prefix, cin, cout, k, groups=1):
    return {f"{prefix}.weight": (cout, cin // groups, k, k)}


def _bn(prefix, c):
    return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
            f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()}


def _conv_block(prefix, cin, cout, k=1, groups=1, prelu=True):
    keys = {**_conv(f"{prefix}.layers.0", cin, cout, k, groups), **_bn(f"{prefix}.layers.1", cout)}
    if prelu:
        keys[f"{prefix}.layers.2.weight"] = (cout,)
    return keys


def _depthwise(prefix, cin, cout, inner):
    return {**_conv_block(f"{prefix}.layers.0", cin, inner),
            **_conv_block(f"{prefix}.layers.1", inner, inner, 3, inner),
            **_conv_block(f"{prefix}.layers.2", inner, cout, prelu=False)}


def arcface_mbf_layout(embedding=512):
    keys = {**_conv_block("layers.0", 3, 128, 3), **_conv_block("layers.1", 128, 128, 3, 64),
            **_depthwise("layers.2", 128, 128, 128)}
    for stage, (width, blocks, inner) in {3: (128, 4, 128), 5: (256, 6, 256), 7: (256, 2, 256)}.items():
        for block in range(blocks):
            keys.update(_depthwise(f"layers.{stage}.layers.{block}", width, width, inner))
    keys.update(_depthwise("layers.4", 128, 256, 256))
    keys.update(_depthwise("layers.6", 256, 256, 512))
    keys.update(_conv_block("conv_sep", 256, 512))
    keys.update(_conv_block("features.layers.0", 512, 512, 7, 512, prelu=False))
    keys["features.layers.2.weight"] = (embedding, 512)
    keys.update(_bn("features.layers.3", embedding))
    return keys


def arcface_iresnet_layout(depths, embedding=512):
    keys = {**_conv("conv1", 3, 64, 3), **_bn("bn1", 64), "prelu.weight": (64,)}
    inplanes = 64
    for stage, (width, depth) in enumerate(zip((64, 128, 256, 512), depths), 1):
        for block in range(depth):
            p = f"layer{stage}.{block}"
            cin = inplanes if block == 0 else width
            keys.update({**_bn(f"{p}.bn1", cin), **_conv(f"{p}.conv1", cin, width, 3), **_bn(f"{p}.bn2", width),
                         f"{p}.prelu.weight": (width,), **_conv(f"{p}.conv2", width, width, 3),
                         **_bn(f"{p}.bn3", width)})
            if block == 0:
                keys.update({**_conv(f"{p}.downsample.0", cin, width, 1), **_bn(f"{p}.downsample.1", width)})
        inplanes = width
    keys.update({**_bn("bn2", 512), "fc.weight": (embedding, 512 * 49), "fc.bias": (embedding,),
                 **_bn("features", embedding)})
    return keys


def parameter_count(layout):
    """Trainable-or-not parameters: everything but BN running statistics."""
    skip = ("running_mean", "running_var", "num_batches_tracked")
    return sum(torch.Size(shape).numel() for key, shape in layout.items() if not key.endswith(skip))


def write_checkpoint(path, layout, seed=0):
    """Weights of a plausible scale (fan-in scaled kernels, BN statistics near unit), so that 60
    layers of them stay finite."""
    generator = torch.Generator().manual_seed(seed)

    def tensor(key, shape):
        if not shape:
            return torch.tensor(7)
        if len(shape) >= 2:
            fan_in = torch.Size(shape[1:]).numel()
            return torch.randn(shape, generator=generator) / fan_in ** 0.5
        base = 0.5 if key.endswith(("running_var", ".weight")) else -0.05
        return base + 0.1 * torch.rand(shape, generator=generator)

    state = {key: tensor(key, shape) for key, shape in layout.items()}
    torch.save(state, path)
    return state


# --- tests ---------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, layout", [
    ("mbf", arcface_mbf_layout()),
    ("iresnet18", arcface_iresnet_layout((2, 2, 2, 2))),
    ("iresnet34", arcface_iresnet_layout((3, 4, 6, 3))),
    ("iresnet50", arcface_iresnet_layout((3, 4, 14, 3))),
    ("iresnet100", arcface_iresnet_layout((3, 13, 30, 3))),
])
def test_arcface_backbones_have_the_published_layout_and_size(spec, layout):
    model = foadx.build_model(spec)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == layout
    assert sum(p.numel() for p in model.parameters()) == parameter_count(layout)


def test_published_sizes():
    """The figures insightface quotes: IResNet-50 43.6M and IResNet-100 65.2M parameters."""
    assert round(parameter_count(arcface_iresnet_layout((3, 4, 14, 3))) / 1e6, 1) == 43.6
    assert round(parameter_count(arcface_iresnet_layout((3, 13, 30, 3))) / 1e6, 1) == 65.2


def test_a_checkpoint_in_arcface_layout_loads_strictly_and_runs(tmp_path):
    state = write_checkpoint(tmp_path / "backbone.pth", arcface_mbf_layout())
    model = foadx.build_model("mbf")
    foadx.load_weights(model, tmp_path / "backbone.pth")
    assert all(torch.equal(model.state_dict()[key], value) for key, value in state.items())
    assert model.eval()(torch.zeros(2, 3, 112, 112)).shape == (2, 512)


def test_a_checkpoint_of_another_width_names_the_mismatch(tmp_path):
    write_checkpoint(tmp_path / "backbone.pth", arcface_mbf_layout(embedding=256))
    with pytest.raises(WeightsError, match=r"shape mismatch: features\.layers\.2\.weight \(256, 512\) vs \(512, 512\)"):
        foadx.load_weights(foadx.build_model("mbf"), tmp_path / "backbone.pth")
    result = run("inspect", "mbf", "--weights", tmp_path / "backbone.pth")
    assert result.exit_code == 3 and "shape mismatch" in error_line(result)


def test_mbf_checkpoint_prunes_with_equal_removal_per_group(tmp_path):
    write_checkpoint(tmp_path / "backbone.pth", arcface_mbf_layout())
    result = run("prune", "mbf", "--weights", tmp_path / "backbone.pth", "--data", "demo", "--flops-target", "0.5",
                 "--include-coupled", "--round-to", "8", "--out", tmp_path / "pruned", "--quiet")
    assert result.exit_code == 0, result.output
    pruned = foadx.load_pruned(tmp_path / "pruned")
    grouped = pruned.layers[1].layers[0]
    assert grouped.groups == 64 and grouped.in_channels == grouped.out_channels
    assert grouped.out_channels % 64 == 0 and grouped.out_channels <= 128
    assert sum(p.numel() for p in pruned.parameters()) < parameter_count(arcface_mbf_layout())
    assert pruned.eval()(torch.zeros(1, 3, 112, 112)).shape == (1, 512)
