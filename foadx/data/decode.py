"""Decoding encoded images (JPEG, PNG ...) into uint8 RGB arrays, with one clear error."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np

from foadx.errors import DataError


# Pillow modes whose values "RGB" conversion would clip or truncate (16-bit, 32-bit int, float)
_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def decode_rgb(image: bytes | Path, source: str = "image") -> np.ndarray:
    """(H, W, 3) uint8 RGB from encoded bytes or a file path. Images beyond Pillow's
    decompression-bomb limit, and 16-bit or float images (which an RGB conversion would silently
    clip), are refused."""
    from PIL import Image, UnidentifiedImageError

    where = str(image) if isinstance(image, Path) else source
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(image) if isinstance(image, bytes) else Path(image))
            with opened:
                if opened.mode in _WIDE_MODES:
                    raise DataError(f"{where} is a {opened.mode} image (16-bit or float): converting it to 8-bit RGB "
                                    "would clip it; save 8-bit images")
                return np.asarray(opened.convert("RGB"))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise DataError(f"{where} is too large to decode safely: {error}") from error
    except (UnidentifiedImageError, OSError, ValueError) as error:
        if isinstance(error, DataError):
            raise
        raise DataError(f"cannot decode {where}: {error}") from error
