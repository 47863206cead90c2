"""MobileFaceNet (Chen et al., "MobileFaceNets", CCBR 2018, Table 1), layer for layer.

    input 112x112x3 -> conv3x3/2 64 -> depthwise conv3x3 64
    -> bottlenecks (t, c, n, s) = (2,64,5,2) (4,128,1,2) (2,128,6,1) (4,128,1,2) (2,128,2,1)
    -> conv1x1 512 -> linear GDConv7x7 (depthwise, no padding) -> linear conv1x1 -> embedding

BN after every conv; PReLU after every BN except the project convs, the GDConv and the embedding.
A bottleneck has a residual add when its stride is 1 and its input and output widths agree.
At 112x112 with a 128-d embedding: 1,003,136 parameters, 220,965,376 conv multiply-adds.

Module names are what ``foadx inspect`` prints as group names, so they are kept short and stable:
``stem.conv``, ``blocks.<i>.expand.conv``, ``head.conv``.
"""

from __future__ import annotations

from torch import Tensor, nn

# (expansion t, output width c, repeats n, first stride s) from the paper's Table 1.
BOTTLENECK_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (2, 64, 5, 2),
    (4, 128, 1, 2),
    (2, 128, 6, 1),
    (4, 128, 1, 2),
    (2, 128, 2, 1),
)


class ConvBN(nn.Sequential):
    """conv -> BN -> optional PReLU; ``conv`` is the layer that produces the channels."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
        activation: bool = True,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False
        )
        self.bn = nn.BatchNorm2d(out_channels)
        if activation:
            self.act = nn.PReLU(out_channels)


class Bottleneck(nn.Module):
    """Inverted residual: 1x1 expand (PReLU) -> 3x3 depthwise (PReLU) -> 1x1 linear project."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.expand = ConvBN(in_channels, hidden, 1)
        self.depthwise = ConvBN(hidden, hidden, 3, stride, 1, groups=hidden)
        self.project = ConvBN(hidden, out_channels, 1, activation=False)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        return x + out if self.residual else out


class MobileFaceNet(nn.Module):
    """Face embedding network: (N, 3, H, W) face crops -> (N, embedding_size) embeddings (128 by
    default); ``input_size`` (112, 112) or (112, 96) sets the GDConv kernel to (H/16, W/16).

    Raises:
        ValueError: H or W is not a multiple of 16 (``build_model`` turns it into UnknownModelError).
    """

    def __init__(
        self, embedding_size: int = 128, input_size: tuple[int, int] = (112, 112)
    ) -> None:
        super().__init__()
        height, width = input_size
        if height % 16 or width % 16:
            raise ValueError(f"MobileFaceNet input size must be a multiple of 16, got {input_size}")
        self.input_size = (height, width)
        self.stem = ConvBN(3, 64, 3, stride=2, padding=1)
        self.stem_dw = ConvBN(64, 64, 3, stride=1, padding=1, groups=64)
        blocks = []
        in_channels = 64
        for expansion, out_channels, repeats, stride in BOTTLENECK_SETTINGS:
            for index in range(repeats):
                blocks.append(
                    Bottleneck(in_channels, out_channels, stride if index == 0 else 1, expansion)
                )
                in_channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.head = ConvBN(in_channels, 512, 1)
        gd_kernel = (height // 16, width // 16)
        self.gdconv = ConvBN(512, 512, gd_kernel, groups=512, activation=False)
        self.embedding = ConvBN(512, embedding_size, 1, activation=False)
        self.flatten = nn.Flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) -> (N, embedding_size) embeddings, not normalised (compare them by cosine)."""
        x = self.blocks(self.stem_dw(self.stem(x)))
        return self.flatten(self.embedding(self.gdconv(self.head(x))))

    def foad_taps(self) -> dict[str, str]:
        """Producing conv -> module whose output FOAD scores (docs/method.md section 1)."""
        taps = {"stem.conv": "stem", "head.conv": "head"}
        for index in range(len(self.blocks)):
            taps[f"blocks.{index}.expand.conv"] = f"blocks.{index}.expand"
        return taps

    def output_layers(self) -> list[str]:
        """The embedding layer is never pruned."""
        return ["embedding.conv"]
