"""Face-verification pair sets: insightface ``.bin`` files and the original LFW layout.

A ``.bin`` (``lfw.bin``, ``cfp_fp.bin``, ``agedb_30.bin``) is a pickle of a tuple
(list of encoded images, list of same-person flags), images 2k and 2k+1 forming pair k; written
by Python 2, so its strings load as bytes (``encoding='bytes'``). It is read by the restricted
unpickler, which admits no global at all: only tuples, lists, bytes and bools can come out, and a
pickle that names any callable is refused before anything runs.

The LFW layout is a folder of aligned crops ``NAME/NAME_0001.jpg`` and ``pairs.txt``: a header
"folds<TAB>pairs" and then, per fold, that many same-person lines "name n1 n2" followed by as
many different-person lines "name1 n1 name2 n2".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from foadx.data.safe_pickle import safe_load
from foadx.errors import DataError


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


def read_verification_bin(path: str | Path) -> PairSet:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"verification file not found: {path}")
    loaded = safe_load(path.read_bytes(), allow_numpy=False, encoding="bytes", source=str(path))
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
    return PairSet(list(images), np.asarray(flags, dtype=bool), str(path))


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
