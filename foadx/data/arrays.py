"""Reading an untrusted ``.npy`` or ``.npz`` file of images without letting it size memory.

A header never sizes an allocation on its own word: the bytes an array's header claims must be
in the file (a 1 KB file claiming 300 GB is truncated, not too big for memory), and an ``.npz``
member may expand at most ``MAX_EXPANSION`` times its compressed size (``EXPANSION_ALLOWANCE``
for small members): numpy's ``savez_compressed`` shrinks real images 2-10x, a DEFLATE bomb of
zeros about 1000x. Only what numpy writes is read: stored or DEFLATE members, no pickles.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import IO

import numpy as np

from foadx.errors import DataError

MAX_EXPANSION = 100  # decompressed bytes per compressed byte an .npz member may reach
EXPANSION_ALLOWANCE = 64 * 2**20  # members up to 64 MiB decompressed are read whatever their ratio
IMAGE_KEYS = ("images", "x", "data")  # the .npz member read, in this order of preference, else the first
_ZIP_PREFIXES = (b"PK\x03\x04", b"PK\x05\x06")  # how numpy.load tells an .npz from an .npy


def load_array(path: Path) -> np.ndarray:
    """The array in an ``.npy`` file, or the images of an ``.npz`` (member ``images``, ``x`` or
    ``data``, else its first).

    Raises:
        DataError: unreadable, holding no arrays, a pickle or object array, truncated (its header
            claims more bytes than the file holds), or an ``.npz`` member compressed other than
            by DEFLATE or expanding beyond ``MAX_EXPANSION`` (CLI exit code 3).
    """
    try:
        with path.open("rb") as stream:
            if stream.read(4) in _ZIP_PREFIXES:
                return _npz_images(path)
            stream.seek(0)
            _check_claim(stream, path.stat().st_size, str(path))
        return np.load(path, allow_pickle=False)
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(f"cannot read {path}: {error}") from error


def _npz_images(path: Path) -> np.ndarray:
    """The image member of the ``.npz`` at ``path``, checked before it is decompressed.

    Raises:
        DataError: no members, or a member ``_check_member`` or ``_check_claim`` refuses.
    """
    with zipfile.ZipFile(path) as archive:
        members = {info.filename.removesuffix(".npy"): info for info in archive.infolist()}
        key = next((key for key in IMAGE_KEYS if key in members), next(iter(members), None))
        if key is None:
            raise DataError(f"{path} holds no arrays")
        info, where = members[key], f"{path}[{key!r}]"
        _check_member(info, path.stat().st_size, where)
        with archive.open(info) as member:
            _check_claim(member, info.file_size, where)
            member.seek(0)
            return np.lib.format.read_array(member, allow_pickle=False)


def _check_member(info: zipfile.ZipInfo, archive_size: int, where: str) -> None:
    """Refuses a member numpy would not write or that would expand out of proportion.

    Raises:
        DataError: a compression other than stored or DEFLATE, a compressed size beyond the
            archive's, or an expansion beyond ``MAX_EXPANSION`` (and ``EXPANSION_ALLOWANCE``).
    """
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise DataError(f"{where} is compressed with zip method {info.compress_type}; foadx reads stored or DEFLATE "
                        "members (what numpy.savez and numpy.savez_compressed write)")
    if info.compress_size > archive_size:
        raise DataError(f"{where} is truncated: its zip entry claims {info.compress_size:,} bytes, "
                        f"the file holds {archive_size:,}")
    if info.file_size > max(MAX_EXPANSION * info.compress_size, EXPANSION_ALLOWANCE):
        raise DataError(f"{where} expands {info.file_size / max(info.compress_size, 1):,.0f}x, from "
                        f"{info.compress_size:,} to {info.file_size:,} bytes; foadx reads compressed arrays that "
                        f"expand at most {MAX_EXPANSION}x: save the images uncompressed (numpy.save or numpy.savez)")


def _check_claim(stream: IO[bytes], size: int, where: str) -> None:
    """Reads an ``.npy`` header from ``stream`` (``size`` bytes in all) and checks that the file
    holds the bytes it claims.

    Raises:
        DataError: the header claims more bytes than follow it. ValueError: not an ``.npy`` header.
    """
    version = np.lib.format.read_magic(stream)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read_header(stream)
    claimed, held = math.prod(shape) * dtype.itemsize, size - stream.tell()
    if claimed > held:
        raise DataError(f"{where} is truncated: its header claims {claimed:,} bytes of array data "
                        f"({'x'.join(map(str, shape))} {dtype}), the file holds {held:,}")
