"""Face-verification pair sets: insightface ``.bin`` files and the original LFW layout.

A ``.bin`` (``lfw.bin``, ``cfp_fp.bin``, ``agedb_30.bin``) is a pickle of a tuple
(list of encoded images, list of same-person flags), images 2k and 2k+1 forming pair k; written
by Python 2, so its strings load as bytes (``encoding='bytes'``). It is read by the restricted
unpickler, which admits no global at all: only tuples, lists, bytes and bools can come out, and a
pickle that names any callable is refused before anything runs.

The LFW layout is a folder of aligned crops ``NAME/NAME_0001.jpg`` and ``pairs.txt``: a header
"folds<TAB>pairs" and then, per fold, that many same-person lines "name n1 n2" followed by as
many different-person lines "name1 n1 name2 n2".

Pair images are aligned face crops (112x112 in insightface's sets, 250x250 in LFW): an image
declaring more than ``MAX_PAIR_PIXELS`` is refused from its header, before anything is decoded,
and images are decoded one at a time as a batch needs them (``PairSet.decoded``), so memory
follows the batch, not the file's count of images.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import overload

import numpy as np

from foadx.data.decode import decode_rgb, image_size
from foadx.data.safe_pickle import safe_load
from foadx.errors import DataError

MAX_PAIR_PIXELS = 1024 * 1024  # per image; a 3-channel image decodes to at most 3 MiB


@dataclass
class PairSet:
    """Images (encoded bytes, file paths, or indices into an image array) where images 2k and
    2k+1 are pair k."""

    images: list[bytes | Path | int]
    same: np.ndarray  # bool, one per pair
    source: str

    def __post_init__(self) -> None:
        if len(self.images) != 2 * len(self.same):
            raise DataError(f"{self.source}: {len(self.images)} images for {len(self.same)} pairs (need 2 per pair)")
        if not len(self.same):
            raise DataError(f"{self.source} holds no pairs")

    def decoded(self, image_array: np.ndarray | None = None) -> DecodedImages:
        """The images as (H, W, C) uint8 arrays, decoded lazily; ``image_array`` holds the images
        that integer entries index."""
        return DecodedImages(self.images, self.source, image_array)


class DecodedImages(Sequence[np.ndarray]):
    """A lazy view of a pair set's images: an image is decoded (at most ``MAX_PAIR_PIXELS``) when
    it is indexed or iterated over; a slice is another lazy view."""

    def __init__(self, entries: Sequence[bytes | Path | int], source: str, image_array: np.ndarray | None) -> None:
        self._entries = entries
        self._source = source
        self._array = image_array

    def __len__(self) -> int:
        return len(self._entries)

    @overload
    def __getitem__(self, index: int) -> np.ndarray: ...

    @overload
    def __getitem__(self, index: slice) -> DecodedImages: ...

    def __getitem__(self, index: int | slice) -> np.ndarray | DecodedImages:
        if isinstance(index, slice):
            return DecodedImages(self._entries[index], self._source, self._array)
        entry = self._entries[index]
        if isinstance(entry, (int, np.integer)):
            if self._array is None:
                raise DataError(f"{self._source}: image indices without an image array")
            return self._array[int(entry)]
        return decode_rgb(entry, self._source, max_pixels=MAX_PAIR_PIXELS)

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self[i] for i in range(len(self)))


def read_verification_bin(path: str | Path) -> PairSet:
    """An insightface verification ``.bin``; each image's declared size is checked from its
    header (nothing is decoded here).

    Raises:
        DataError: missing or not a regular file, empty, not a plain-data pickle of (list of
            bytes, list of bools), no pairs, or an image over ``MAX_PAIR_PIXELS``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"verification file not found or not a regular file: {path}")
    data = path.read_bytes()
    if not data:
        raise DataError(f"{path} is empty; expected an insightface verification .bin")
    loaded = safe_load(data, allow_numpy=False, encoding="bytes", source=str(path))
    if not (isinstance(loaded, (tuple, list)) and len(loaded) == 2):
        raise DataError(f"{path}: expected a pickled (images, same-person flags) pair, got {type(loaded).__name__}")
    images, flags = loaded
    if isinstance(images, list) and len({id(image) for image in images}) < len(images):
        raise DataError(f"{path}: the same image object is listed more than once (a pickle that repeats one "
                        "reference expands far beyond its size); not a verification set")
    if not isinstance(images, list) or not all(isinstance(image, bytes) for image in images):
        raise DataError(f"{path}: the first element must be a list of encoded images (bytes)")
    if not isinstance(flags, list) or not all(isinstance(flag, bool) for flag in flags):
        raise DataError(f"{path}: the second element must be a list of booleans")
    pairs = PairSet(list(images), np.asarray(flags, dtype=bool), str(path))
    _check_sizes(images, str(path))
    return pairs


def _check_sizes(images: list[bytes], source: str) -> None:
    for number, image in enumerate(images):
        width, height = image_size(image, f"{source} image {number}")
        if width * height > MAX_PAIR_PIXELS:
            raise DataError(f"{source}: image {number} declares {width}x{height} pixels; face pairs are aligned "
                            f"crops (at most {MAX_PAIR_PIXELS:,} pixels)")


def _lfw_image(root: Path, name: str, number: str) -> Path:
    return root / name / f"{name}_{int(number):04d}.jpg"


def read_lfw_pairs(folder: str | Path, pairs_file: str | Path | None = None) -> PairSet:
    """The original LFW layout: ``folder/NAME/NAME_0001.jpg`` and ``pairs.txt``."""
    root = Path(folder)
    pairs_path = Path(pairs_file) if pairs_file else root / "pairs.txt"
    if not pairs_path.is_file():
        raise DataError(f"pairs file not found: {pairs_path}")
    lines = [line.split() for line in pairs_path.read_text().splitlines() if line.strip()]
    try:
        folds, per_set = (int(value) for value in lines[0])
    except (IndexError, ValueError):
        raise DataError(f"{pairs_path}: the first line must be 'folds<TAB>pairs per set'") from None
    body = lines[1:]
    if len(body) != folds * 2 * per_set:
        raise DataError(f"{pairs_path}: header promises {folds} x 2 x {per_set} pairs, file has {len(body)}")
    images: list[bytes | Path] = []
    same = []
    for number, fields in enumerate(body, 2):
        if len(fields) == 3:
            images += [_lfw_image(root, fields[0], fields[1]), _lfw_image(root, fields[0], fields[2])]
            same.append(True)
        elif len(fields) == 4:
            images += [_lfw_image(root, fields[0], fields[1]), _lfw_image(root, fields[2], fields[3])]
            same.append(False)
        else:
            raise DataError(f"{pairs_path}:{number}: expected 3 or 4 fields, got {len(fields)}")
    missing = next((path for path in images if not Path(path).is_file()), None)
    if missing is not None:
        raise DataError(f"{pairs_path} names {missing}, which does not exist")
    return PairSet(images, np.asarray(same, dtype=bool), str(pairs_path))


def read_pairs(source: str | Path) -> PairSet:
    """A ``.bin`` file or an LFW folder with ``pairs.txt``."""
    path = Path(source)
    if path.suffix == ".bin":
        return read_verification_bin(path)
    if path.is_dir():
        return read_lfw_pairs(path)
    raise DataError(f"{source}: expected an insightface .bin file or an LFW folder with pairs.txt")
