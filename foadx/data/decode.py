"""Decoding encoded images (JPEG, PNG ...) into uint8 RGB arrays, with one clear error."""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from foadx.errors import DataError

if TYPE_CHECKING:
    from PIL import Image


# Pillow modes whose values "RGB" conversion would clip or truncate (16-bit, 32-bit int, float)
_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
SHRINK_MARGIN = 4  # an image is shrunk while decoding to no less than 4 times the size it is resized to


def image_size(image: bytes, source: str = "image") -> tuple[int, int]:
    """(width, height) an encoded image declares, read from its header without decoding it.

    Raises:
        DataError: not an image Pillow can identify.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(image)) as opened:
                return opened.size
    except (Image.DecompressionBombError, UnidentifiedImageError, OSError, ValueError) as error:
        raise DataError(f"cannot read the image header in {source}: {error}") from error


def decode_rgb(image: bytes | Path, source: str = "image", max_pixels: int | None = None,
               mode: Literal["RGB", "RGBA"] = "RGB", target_size: Sequence[int] | None = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB from encoded bytes or a file path; with ``mode`` "RGBA", (H, W, 4)
    RGBA: the file's alpha (PNG, WebP, a palette's transparency), 255 where it has none.
    Images beyond Pillow's decompression-bomb limit or beyond ``max_pixels`` (checked from the
    header, before decoding), and 16-bit or float images (which an RGB conversion would
    silently clip), are refused. ``target_size``: the (H, W) the image is resized to later; an
    image at least ``2 * SHRINK_MARGIN`` times that size is shrunk while decoding (``_shrunk``).

    Raises:
        DataError: undecodable, too large, or a 16-bit or float image.
    """
    from PIL import Image, UnidentifiedImageError

    where = str(image) if isinstance(image, Path) else source
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(image) if isinstance(image, bytes) else Path(image))
            with opened:
                _check_decodable(opened, where, max_pixels)
                decoded = _shrunk(opened, mode, target_size) if target_size is not None else opened
                return np.asarray(decoded.convert(mode))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise DataError(f"{where} is too large to decode safely: {error}") from error
    except (UnidentifiedImageError, OSError, ValueError) as error:
        if isinstance(error, DataError):
            raise
        raise DataError(f"cannot decode {where}: {error}") from error


def _shrunk(opened: Image.Image, mode: str, target_size: Sequence[int]) -> Image.Image:
    """``opened`` decoded, and shrunk for a later resize to ``target_size`` (H, W) by the largest
    integer factor (2 or more) that keeps it at least ``SHRINK_MARGIN`` times that size in both
    dimensions: averaged over boxes (Pillow's BOX filter) per channel, so that a huge image never
    reaches the float pipeline at full size. Grey and RGB images are shrunk before their
    conversion to ``mode`` (which maps pixels one by one), others after it (a palette's indices
    cannot be averaged)."""
    from PIL import Image

    height, width = (SHRINK_MARGIN * side for side in target_size)
    image = opened if opened.mode in ("L", "RGB") else opened.convert(mode)
    factor = min(image.width // width, image.height // height)
    if factor < 2:
        return image
    size = (image.width // factor, image.height // factor)
    if image.mode == "RGBA":  # Pillow would premultiply by alpha; the float pipeline does not
        return Image.merge("RGBA", [band.resize(size, Image.Resampling.BOX) for band in image.split()])
    return image.resize(size, Image.Resampling.BOX)


def _check_decodable(opened: Image.Image, where: str, max_pixels: int | None) -> None:
    width, height = opened.size
    if max_pixels is not None and width * height > max_pixels:
        raise DataError(f"{where} declares a {width}x{height} image; at most {max_pixels:,} pixels here")
    if opened.mode in _WIDE_MODES:
        raise DataError(f"{where} is a {opened.mode} image (16-bit or float): converting it to 8-bit RGB "
                        "would clip it; save 8-bit images")
