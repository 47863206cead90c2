"""insightface ``arcface_torch`` backbones: ``mbf`` (its MobileFaceNet) and ``iresnet18/34/50/100``.

Written here from the published architectures, with module names laid out exactly as
arcface_torch lays them out, so that a ``backbone.pth`` it saved (``backbone.state_dict()``)
loads with strict key and shape checks through ``--weights``.

``mbf`` (arcface_torch ``backbones/mobilefacenet.py``, ``scale=2``, ``blocks=(1, 4, 6, 2)``):

    ConvBlock 3->128 3x3/2 -> ConvBlock 128->128 3x3 groups=64 (2 channels per group)
    -> DepthWise 128->128 /2 (inner 128) -> 4 x residual DepthWise 128 (inner 128)
    -> DepthWise 128->256 /2 (inner 256) -> 6 x residual DepthWise 256 (inner 256)
    -> DepthWise 256->256 /2 (inner 512) -> 2 x residual DepthWise 256 (inner 256)
    -> conv_sep ConvBlock 256->512 1x1 -> GDC: 7x7 depthwise (linear) -> Linear 512->E -> BN1d

``ConvBlock`` is conv -> BN -> PReLU, ``LinearBlock`` conv -> BN, ``DepthWise`` a 1x1 expand
ConvBlock, a depthwise ConvBlock and a 1x1 project LinearBlock, with the input added back in
the residual stages.

``iresnet`` (Deng et al., "ArcFace", CVPR 2019; arcface_torch ``backbones/iresnet.py``): a 3x3
stem (64, stride 1, BN, PReLU), four stages of improved basic blocks (BN -> 3x3 conv -> BN ->
PReLU -> 3x3 conv (stride on the second conv) -> BN, plus a 1x1 conv + BN shortcut where the
shape changes) at widths 64/128/256/512, each stage halving the size, then BN, flatten,
dropout, a Linear from 512x7x7 and a BN1d on the embedding (its scale frozen at 1).
Stage depths: 18 (2,2,2,2), 34 (3,4,6,3), 50 (3,4,14,3), 100 (3,13,30,3).

Both take 112x112 inputs (the GDC kernel and the flattened 7x7 map fix it) and insightface's
normalisation (x - 127.5) / 127.5.
"""

from __future__ import annotations

from torch import Tensor, nn

IRESNET_DEPTHS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 14, 3),
    100: (3, 13, 30, 3),
}


class ConvBlock(nn.Module):
    """conv (no bias) -> BN -> PReLU, held in ``layers`` as arcface_torch names them; without
    the activation it is arcface_torch's ``LinearBlock`` (same key layout, two entries)."""

    def __init__(self, in_c: int, out_c: int, kernel: int = 1, stride: int = 1, padding: int = 0,
                 groups: int = 1, activation: bool = True) -> None:
        super().__init__()
        layers = [nn.Conv2d(in_c, out_c, kernel, stride, padding, groups=groups, bias=False), nn.BatchNorm2d(out_c)]
        self.layers = nn.Sequential(*layers, *([nn.PReLU(out_c)] if activation else []))

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


def linear_block(in_c: int, out_c: int, kernel: int = 1, groups: int = 1) -> ConvBlock:
    """arcface_torch's LinearBlock: conv -> BN, no activation."""
    return ConvBlock(in_c, out_c, kernel, groups=groups, activation=False)


class DepthWise(nn.Module):
    """1x1 expand to ``inner`` -> 3x3 depthwise (the stride) -> 1x1 linear project; residual
    adds the input back."""

    def __init__(self, in_c: int, out_c: int, inner: int, stride: int, residual: bool = False) -> None:
        super().__init__()
        self.residual = residual
        self.layers = nn.Sequential(
            ConvBlock(in_c, inner),
            ConvBlock(inner, inner, kernel=3, stride=stride, padding=1, groups=inner),
            linear_block(inner, out_c),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.layers(x) if self.residual else self.layers(x)


class Residual(nn.Module):
    """``blocks`` residual DepthWise blocks at width ``channels``."""

    def __init__(self, channels: int, blocks: int, inner: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(*[DepthWise(channels, channels, inner, 1, residual=True) for _ in range(blocks)])

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class GDC(nn.Module):
    """Global depthwise conv (7x7, linear) -> flatten -> Linear (no bias) -> BN1d."""

    def __init__(self, embedding_size: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            linear_block(512, 512, kernel=7, groups=512),
            nn.Flatten(),
            nn.Linear(512, embedding_size, bias=False),
            nn.BatchNorm1d(embedding_size),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class ArcFaceMobileFaceNet(nn.Module):
    """arcface_torch's ``mbf``: MobileFaceNet at width scale 2 with blocks (1, 4, 6, 2)."""

    def __init__(self, embedding_size: int = 512, scale: int = 2) -> None:
        super().__init__()
        narrow, wide = 64 * scale, 128 * scale
        self.layers = nn.ModuleList([
            ConvBlock(3, narrow, kernel=3, stride=2, padding=1),
            ConvBlock(narrow, narrow, kernel=3, padding=1, groups=64),
            DepthWise(narrow, narrow, 128, stride=2),
            Residual(narrow, 4, 128),
            DepthWise(narrow, wide, 256, stride=2),
            Residual(wide, 6, 256),
            DepthWise(wide, wide, 512, stride=2),
            Residual(wide, 2, 256),
        ])
        self.conv_sep = ConvBlock(wide, 512)
        self.features = GDC(embedding_size)
        _initialise(self)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.features(self.conv_sep(x))


class IBasicBlock(nn.Module):
    """BN -> conv3x3 -> BN -> PReLU -> conv3x3 (stride) -> BN, plus the (projected) input."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-5)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-5)
        self.prelu = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-5)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (self.downsample(x) if self.downsample is not None else x)


class IResNet(nn.Module):
    """arcface_torch's ``iresnet``: see the module docstring."""

    def __init__(self, depths: tuple[int, int, int, int], embedding_size: int = 512, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        widths, inplanes = (64, 128, 256, 512), 64
        for index, (width, depth) in enumerate(zip(widths, depths), 1):
            setattr(self, f"layer{index}", self._stage(inplanes, width, depth))
            inplanes = width
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(512 * 7 * 7, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size, eps=1e-5)
        _initialise(self)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False  # as arcface_torch trains it

    @staticmethod
    def _stage(inplanes: int, planes: int, depth: int) -> nn.Sequential:
        downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, 2, bias=False), nn.BatchNorm2d(planes, eps=1e-5))
        blocks = [IBasicBlock(inplanes, planes, 2, downsample)]
        blocks += [IBasicBlock(planes, planes) for _ in range(depth - 1)]
        return nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(self.bn2(x).flatten(1))
        return self.features(self.fc(x))


def _initialise(model: nn.Module) -> None:
    """He-normal convolutions, unit BN scales, zero biases (arcface_torch's initialisation)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)


def mbf(embedding_size: int = 512) -> ArcFaceMobileFaceNet:
    return ArcFaceMobileFaceNet(embedding_size)


def iresnet(depth: int, embedding_size: int = 512, dropout: float = 0.0) -> IResNet:
    return IResNet(IRESNET_DEPTHS[depth], embedding_size, dropout)
