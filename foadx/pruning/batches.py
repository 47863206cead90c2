"""Calibration images as re-iterable, checked batches."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import Tensor

from foadx.errors import DataError


class FiniteBatches:
    """Re-iterable calibration batches, each checked to hold only finite values: a NaN image
    would make every similarity NaN and the selection meaningless."""

    def __init__(self, batches: Iterable[Tensor]) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[Tensor]:
        seen = 0
        for batch in self.batches:
            finite = torch.isfinite(batch.reshape(batch.shape[0], -1)).all(dim=1)
            if not bool(finite.all()):
                bad = seen + int((~finite).nonzero()[0])
                raise DataError(f"calibration image {bad} (0-based, in sampling order) holds NaN or inf values")
            seen += batch.shape[0]
            yield batch


def as_batches(images: Tensor | Iterable[Tensor], batch_size: int) -> FiniteBatches:
    """A re-iterable of checked image batches from a tensor (N, C, H, W) or any re-iterable of batches.

    Raises:
        DataError: a tensor that is not (N, C, H, W) with N > 0.
    """
    if isinstance(images, FiniteBatches):
        return images
    if isinstance(images, Tensor):
        if images.dim() != 4 or images.shape[0] == 0:
            raise DataError(f"calibration images must be (N, C, H, W) with N > 0, got {tuple(images.shape)}")
        return FiniteBatches([images[start : start + batch_size] for start in range(0, images.shape[0], batch_size)])
    return FiniteBatches(images)


def first_batch(batches: FiniteBatches) -> Tensor:
    """The first calibration batch (N, C, H, W), whose shape is the network's input contract.

    Raises:
        DataError: no images, or a batch that is not (N, C, H, W).
    """
    first = next(iter(batches), None)
    if first is None or first.shape[0] == 0:
        raise DataError("no calibration images were given")
    if first.dim() != 4:
        raise DataError(f"calibration batches must be (N, C, H, W), got {tuple(first.shape)}")
    return first
