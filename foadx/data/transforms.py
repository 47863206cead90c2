"""Turning uint8 images (N, H, W, c) into a model's normalised float input (N, C, H, W), and
resizing single uint8 images so that images of mixed sizes can be stacked into one batch.

The model's channel count C is the length of its mean/std (one value per channel). Images of
c = 1 (grey), 3 (RGB) or 4 (RGBA) channels become C = 1, 3 or 4 channels by Pillow's own
conversion rules, applied here to every source (arrays and decoded files alike):

- grey from RGB: ITU-R 601-2 luma, L = 0.299 R + 0.587 G + 0.114 B (Pillow's "L" mode),
  computed in float (Pillow rounds it to 8 bits);
- RGB from grey: the grey value in all three channels;
- RGBA: the image's alpha where it has one (decoded files keep it, ``IMAGE_MODES``), else
  opaque (1.0); RGB or grey from RGBA drops the alpha without compositing, as Pillow does.

Other channel counts have no image form and are refused (``check_channels``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from foadx.errors import DataError

LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601-2, Pillow's RGB -> "L"
IMAGE_MODES = {1: "RGB", 3: "RGB", 4: "RGBA"}  # the Pillow mode files are decoded to, per model channel count


def writable(array: np.ndarray) -> np.ndarray:
    """A C-contiguous, writable array (a copy only when needed): images decoded by PIL or read
    from a memory map are read-only, and torch warns on every ``from_numpy`` of one."""
    return np.require(array, requirements=("C", "W"))


def check_channels(channels: int) -> int:
    """``channels`` when images can be fed at that count (1, 3 or 4).

    Raises:
        DataError: any other count (CLI exit code 3), naming it and what foadx can feed.
    """
    if channels not in IMAGE_MODES:
        raise DataError(f"the model takes {channels} input channels; foadx feeds images as 1 (grey), 3 (RGB) "
                        "or 4 (RGBA) channels")
    return channels


def file_mode(channels: int) -> str:
    """The Pillow mode image files are decoded to for a model of ``channels`` (1, 3 or 4): RGBA
    for 4 (the file's alpha kept), else RGB (grey is then the luma of RGB, ``match_channels``).

    Raises:
        DataError: another channel count (``check_channels``).
    """
    return IMAGE_MODES[check_channels(channels)]


def normalised_channels(mean: Sequence[float], std: Sequence[float]) -> int:
    """The channel count C a normalisation feeds: one mean and one std value per channel.

    Raises:
        DataError: mean and std of different lengths, or a count ``check_channels`` refuses.
    """
    if len(mean) != len(std):
        raise DataError(f"mean and std need one value per input channel each, got {len(mean)} and {len(std)}")
    return check_channels(len(mean))


def match_channels(batch: Tensor, channels: int) -> Tensor:
    """A float batch (N, c, H, W) in [0, 1] with c in (1, 3, 4), converted to ``channels`` (1, 3
    or 4) by the rules in this module's docstring.

    Raises:
        DataError: ``channels`` or c is not 1, 3 or 4.
    """
    have = batch.shape[1]
    if have == check_channels(channels):
        return batch
    check_channels(have)
    colour = batch[:, :3] if have >= 3 else batch.expand(-1, 3, -1, -1)
    if channels == 1:
        weights = torch.tensor(LUMA_WEIGHTS, dtype=batch.dtype).view(1, 3, 1, 1)
        return (colour * weights).sum(dim=1, keepdim=True)
    if channels == 3:
        return colour
    return torch.cat([colour, torch.ones_like(batch[:, :1])], dim=1)


def prepare_batch(images: np.ndarray | Tensor, input_size: Sequence[int], mean: Sequence[float],
                  std: Sequence[float]) -> Tensor:
    """uint8 or [0, 1] float images (N, H, W, c) -> float32 (N, C, H, W): scaled to [0, 1]
    (uint8), converted to C = len(mean) channels (``match_channels``), resized to ``input_size``
    (H, W; bilinear, antialiased), then (x - mean) / std per channel.

    Raises:
        DataError: mean and std of different lengths, or a channel count images cannot have
            (``normalised_channels``).
    """
    channels = normalised_channels(mean, std)
    batch = torch.as_tensor(writable(images) if isinstance(images, np.ndarray) else images)
    uint8 = batch.dtype == torch.uint8
    batch = batch.permute(0, 3, 1, 2).float()
    if uint8:
        batch = batch / 255.0
    batch = match_channels(batch, channels)
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
