"""VGG-16 for CIFAR in the FOAD reference layout (SSriven/FOAD).

13 conv3x3-BN-ReLU blocks, max-pool after convs 2, 4, 7 and 10 (inside those blocks, so the FOAD
tap on a block's output includes the pool as the reference does), average-pool 2, one Linear
512 -> classes: about 14.72M parameters and 313.2M multiply-adds at 32x32.
"""

from __future__ import annotations

from torch import Tensor, nn

WIDTHS: tuple[int, ...] = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
POOL_AFTER: frozenset[int] = frozenset({1, 3, 6, 9})  # zero-based conv indices 2, 4, 7, 10


class VGGBlock(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, pool: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        if pool:
            self.pool = nn.MaxPool2d(2, 2)


class VGG16Cifar(nn.Module):
    """VGG-16 for CIFAR (module docstring): (N, 3, 32, 32) images -> (N, num_classes) logits."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        blocks = []
        in_channels = 3
        for index, width in enumerate(WIDTHS):
            blocks.append(VGGBlock(in_channels, width, pool=index in POOL_AFTER))
            in_channels = width
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AvgPool2d(2)
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Linear(in_channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, 32, 32) images -> (N, num_classes) logits (the 2x2 average pool leaves 512 features at 32x32)."""
        return self.classifier(self.flatten(self.pool(self.features(x))))

    def foad_taps(self) -> dict[str, str]:
        """Each block's conv -> the whole block (BN, ReLU and, where present, its max-pool), as the
        FOAD reference scores it (docs/method.md section 1)."""
        return {f"features.{i}.conv": f"features.{i}" for i in range(len(WIDTHS))}

    def output_layers(self) -> list[str]:
        """The ``classifier`` is never pruned."""
        return ["classifier"]
