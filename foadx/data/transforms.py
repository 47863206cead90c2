"""Turning uint8 images (N, H, W, C) into a model's normalised float input (N, 3, H, W), and
resizing single uint8 images so that images of mixed sizes can be stacked into one batch."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def writable(array: np.ndarray) -> np.ndarray:
    """A C-contiguous, writable array (a copy only when needed): images decoded by PIL or read
    from a memory map are read-only, and torch warns on every ``from_numpy`` of one."""
    return np.require(array, requirements=("C", "W"))


def prepare_batch(images: np.ndarray | Tensor, input_size: Sequence[int], mean: Sequence[float],
                  std: Sequence[float]) -> Tensor:
    """Scale to [0, 1] (uint8), grey to RGB, resize (bilinear, antialiased), then (x - mean) / std."""
    batch = torch.as_tensor(writable(images) if isinstance(images, np.ndarray) else images)
    uint8 = batch.dtype == torch.uint8
    batch = batch.permute(0, 3, 1, 2).float()
    if uint8:
        batch = batch / 255.0
    if batch.shape[1] == 1:
        batch = batch.expand(-1, 3, -1, -1)
    if tuple(batch.shape[-2:]) != tuple(input_size):
        batch = F.interpolate(batch, size=tuple(input_size), mode="bilinear", antialias=True, align_corners=False)
    mean_tensor = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    std_tensor = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (batch - mean_tensor) / std_tensor


def resize_uint8(image: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """One (H, W, C) uint8 image resized (bilinear, antialiased) to ``size``, still uint8."""
    if tuple(image.shape[:2]) == tuple(size):
        return image
    tensor = torch.from_numpy(writable(image)).permute(2, 0, 1)[None].float()
    tensor = F.interpolate(tensor, size=tuple(size), mode="bilinear", antialias=True, align_corners=False)
    return tensor[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
