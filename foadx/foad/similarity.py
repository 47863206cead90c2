"""Channel similarity of FOAD (docs/method.md section 2), accumulated image by image.

    S(i, j) = (1/N) * sum_n 1 / (1 + ||F[n, i] - F[n, j]||_2)

The per-image distances come from a float64 Gram matrix (||a||^2 + ||b||^2 - 2ab, clamped at 0).
float64 matters: float32 distances (and ``torch.cdist``'s matrix-multiply shortcut above 25 rows)
flip near-ties and so change the kept set; float64 keeps CPU and GPU plans identical.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def pairwise_squared_distances(maps: Tensor) -> Tensor:
    """Per-image squared Euclidean distances between channel maps.

    ``maps`` is (B, C, ...) with any number of spatial dims; the result is (B, C, C) in float64,
    exactly 0 on the diagonal and between identical maps.
    """
    flat = maps.reshape(maps.shape[0], maps.shape[1], -1).to(torch.float64)
    gram = torch.bmm(flat, flat.transpose(1, 2))
    # Norms from the Gram diagonal, not a separate sum: the same products in the same order, so
    # identical maps give exactly 0 and score exactly S = 1.
    squared_norms = gram.diagonal(dim1=1, dim2=2)
    d2 = squared_norms.unsqueeze(2) + squared_norms.unsqueeze(1) - 2.0 * gram
    d2.clamp_(min=0.0)
    d2.diagonal(dim1=1, dim2=2).zero_()
    return d2


class SimilarityAccumulator:
    """Streams batches of feature maps into FOAD's S in constant memory.

    A coupled group (docs/method.md section 5) has several member tensors that share one channel index
    set; their per-image distance is sqrt(sum over members of ||dF_member||^2). A plain group is
    the one-member case.
    """

    def __init__(self, channels: int) -> None:
        if channels < 1:
            raise ValueError(f"a group needs at least one channel, got {channels}")
        self.channels = channels
        self.images = 0
        self._sum: Tensor | None = None

    def add(self, members: Sequence[Tensor]) -> None:
        """Adds one batch: each member is (B, C, ...) for the same B images and the same C."""
        if not members:
            raise ValueError("no feature maps given")
        batch = members[0].shape[0]
        d2 = None
        for maps in members:
            if maps.dim() < 2 or maps.shape[0] != batch or maps.shape[1] != self.channels:
                raise ValueError(
                    f"expected maps of shape ({batch}, {self.channels}, ...), got {tuple(maps.shape)}"
                )
            term = pairwise_squared_distances(maps)
            d2 = term if d2 is None else d2 + term
        per_image = 1.0 / (1.0 + d2.sqrt())
        batch_sum = per_image.sum(dim=0).cpu()
        self._sum = batch_sum if self._sum is None else self._sum + batch_sum
        self.images += batch

    def similarity(self) -> Tensor:
        """S as a (C, C) float64 CPU tensor; requires at least one image."""
        if self._sum is None or self.images == 0:
            raise ValueError("no images were accumulated")
        return self._sum / self.images


def channel_similarity(maps: Tensor, batch_size: int | None = None) -> Tensor:
    """FOAD's S for maps (N, C, H, W); ``batch_size`` bounds the working memory."""
    if maps.dim() < 2:
        raise ValueError(f"expected maps (N, C, ...), got shape {tuple(maps.shape)}")
    accumulator = SimilarityAccumulator(maps.shape[1])
    step = batch_size or maps.shape[0]
    for start in range(0, maps.shape[0], step):
        accumulator.add([maps[start : start + step]])
    return accumulator.similarity()
