"""Decoding encoded images (JPEG, PNG ...) into uint8 RGB arrays, with one clear error."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from foadx.errors import DataError


def decode_rgb(image: bytes | Path, source: str = "image") -> np.ndarray:
    """(H, W, 3) uint8 RGB from encoded bytes or a file path."""
    from PIL import Image, UnidentifiedImageError

    try:
        opened = Image.open(io.BytesIO(image) if isinstance(image, bytes) else Path(image))
        with opened:
            return np.asarray(opened.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as error:
        where = str(image) if isinstance(image, Path) else source
        raise DataError(f"cannot decode {where}: {error}") from error
