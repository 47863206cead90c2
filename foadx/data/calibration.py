"""Calibration images for pruning: image folders, CIFAR python batches, .npy/.npz, the demo.

Every source is read into 8-bit images (N, H, W, c) lazily where it can be (image folders decode
one batch at a time); ``CalibrationImages`` samples N of them with a seed, and yields float
batches at the model's channel count (grey, RGB or RGBA: ``foadx.data.transforms``), resized
to its input size and normalised with its mean/std (one value per channel).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image
import torch
from torch import Tensor

from foadx.data.arrays import load_array
from foadx.data.decode import decode_rgb
from foadx.data.safe_pickle import safe_load
from foadx.data.transforms import IMAGE_MODES, file_mode, normalised_channels, prepare_batch, resize_uint8
from foadx.errors import DataError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"}
DEMO_FILE = Path(__file__).with_name("demo_digits.npz")


class ImageReader(Protocol):
    def __len__(self) -> int: ...
    def read(self, indices: Sequence[int]) -> np.ndarray: ...  # uint8 or float (n, H, W, C)


@dataclass
class ArrayReader:
    """Images already in memory, (N, H, W, C)."""

    array: np.ndarray

    def __len__(self) -> int:
        return self.array.shape[0]

    def read(self, indices: Sequence[int]) -> np.ndarray:
        return self.array[list(indices)]


@dataclass
class FileReader:
    """An image folder: files decoded with PIL (``mode`` RGB, or RGBA keeping their alpha) when
    a batch asks for them, shrunk while decoding for a later resize to ``target_size`` (H, W)."""

    files: list[Path]
    mode: str = "RGB"
    target_size: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.files)

    def read(self, indices: Sequence[int]) -> np.ndarray:
        decoded = [decode_rgb(self.files[index], mode=self.mode, target_size=self.target_size) for index in indices]
        shapes = {image.shape for image in decoded}
        if len(shapes) > 1:  # resize happens later per image; pad nothing, just keep a list shape
            return _stack_resized(decoded)
        return np.stack(decoded)


@dataclass
class RecordReader:
    """insightface RecordIO (``train.rec``): records decoded when a batch asks for them, shrunk
    while decoding for a later resize to ``target_size`` (H, W)."""

    path: Path
    mode: str = "RGB"
    target_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        from foadx.data.recordio import FaceRecordDataset

        self.dataset = FaceRecordDataset(self.path)

    def __len__(self) -> int:
        return len(self.dataset)

    def read(self, indices: Sequence[int]) -> np.ndarray:
        decoded = [decode_rgb(self.dataset.raw(index)[0], f"{self.path} record {index}", mode=self.mode,
                              target_size=self.target_size) for index in indices]
        return _stack_resized(decoded) if len({image.shape for image in decoded}) > 1 else np.stack(decoded)


def _stack_resized(images: list[np.ndarray]) -> np.ndarray:
    return np.stack([resize_uint8(image, images[0].shape[:2]) for image in images])


def _to_nhwc(array: np.ndarray, source: str) -> np.ndarray:
    if array.ndim == 3:
        return array[..., None]
    if array.ndim == 4 and array.shape[-1] in IMAGE_MODES:
        return array
    if array.ndim == 4 and array.shape[1] in IMAGE_MODES:
        return array.transpose(0, 2, 3, 1)
    raise DataError(f"{source}: expected images (N, H, W), (N, H, W, C) or (N, C, H, W) with C = 1, 3 or 4, "
                    f"got {array.shape}")


def _numpy_reader(path: Path) -> ArrayReader:
    images = _to_nhwc(_checked_pixels(load_array(path), path), str(path))
    if images.shape[1] * images.shape[2] > Image.MAX_IMAGE_PIXELS:  # the limit image files have (Pillow's)
        raise DataError(f"{path}: its images are {images.shape[1]}x{images.shape[2]}; at most "
                        f"{Image.MAX_IMAGE_PIXELS:,} pixels an image, as for image files")
    return ArrayReader(images)


def _checked_pixels(array: np.ndarray, path: Path) -> np.ndarray:
    """uint8 in 0..255 or float in 0..1, in the machine's byte order; a float array in 0..255
    would silently be read as 255x too bright, so it is refused."""
    if array.dtype != np.uint8 and not np.issubdtype(array.dtype, np.floating):
        raise DataError(f"{path}: images must be uint8 or float, got {array.dtype}")
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    if np.issubdtype(array.dtype, np.floating) and array.size:
        largest = np.fmax.reduce(array, axis=None)  # nanmax without its all-NaN warning; NaN is refused per image
        if largest > 1.0 + 1e-6:
            raise DataError(f"{path}: float images must be in [0, 1], this array reaches {largest:g}; "
                            "save uint8 pixels or divide by 255")
    return array


def read_cifar_batch(path: Path) -> tuple[np.ndarray, list[int]]:
    """One CIFAR-10/100 python batch: (N, 32, 32, 3) uint8 and its labels."""
    try:
        batch = safe_load(path.read_bytes(), allow_numpy=True, source=str(path))
    except OSError as error:
        raise DataError(f"cannot read {path}: {error}") from error
    if not isinstance(batch, dict) or b"data" not in batch:
        raise DataError(f"{path} is not a CIFAR python batch (no b'data')")
    data = batch[b"data"]
    if not isinstance(data, np.ndarray):  # nested lists can share references and explode in np.asarray
        raise DataError(f"{path}: CIFAR data must be a numpy array, got {type(data).__name__}")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{path}: CIFAR data must be uint8 (N, 3072), got {data.dtype} {data.shape}")
    labels = batch.get(b"labels", batch.get(b"fine_labels", []))
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), list(labels)


def _cifar_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    names = sorted(p for p in path.glob("data_batch_*") if p.is_file())
    if not names:
        names = [p for p in (path / "train", path / "test_batch", path / "test") if p.is_file()]
    return names


def _is_cifar(path: Path) -> bool:
    return bool(_cifar_files(path)) if path.is_dir() else path.name.startswith(("data_batch", "test_batch"))


def open_reader(source: str, channels: int = 3,
                target_size: tuple[int, int] | None = None) -> tuple[ImageReader, str]:
    """Picks the reader for ``source``; returns it with a short description for the plan.

    Args:
        source: "demo", a ``.npy``/``.npz`` array of (N, H, W, C) images, a RecordIO ``.rec``
            file or a folder holding ``train.rec``, a folder of CIFAR batches, or an image folder.
        channels: the model's input channels (1, 3 or 4): 4 decodes image files with their alpha.
        target_size: the (H, W) images are resized to: image files far larger are shrunk while
            they decode (``decode_rgb``), so that one image never takes memory at full size in float.

    Raises:
        DataError: the source is missing, an image folder holds no images, an array file
            ``load_array`` refuses, the kind is not supported, or ``channels`` is not 1, 3 or 4
            (CLI exit code 3).
    """
    if source == "demo":
        return _numpy_reader(DEMO_FILE), "demo (5,000 MNIST digits)"
    path = Path(source)
    if not path.exists():
        raise DataError(f"calibration data not found: {source} (a folder, CIFAR batches, .npy/.npz, train.rec or 'demo')")
    if path.is_file() and path.suffix in (".npy", ".npz"):
        return _numpy_reader(path), f"array {path.name}"
    records = path if path.suffix == ".rec" else path / "train.rec"
    if records.is_file():
        return RecordReader(records, file_mode(channels), target_size), f"records {records.parent.name}/{records.name}"
    if _is_cifar(path):
        parts = [read_cifar_batch(file)[0] for file in _cifar_files(path)]
        return ArrayReader(np.concatenate(parts)), f"cifar batches {path.name}"
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise DataError(f"no images found in {source} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
        return FileReader(files, file_mode(channels), target_size), f"image folder {path.name}"
    raise DataError(f"unsupported calibration data {source}: use a folder, CIFAR batches, .npy/.npz or 'demo'")


class CalibrationImages:
    """A seeded sample of N images as normalised float batches; re-iterable, decoded lazily.

    Iterating yields float32 (n, C, H, W) batches of at most ``batch_size`` images, C = len(mean)
    channels, resized to ``input_size`` (H, W) and normalised (x - mean) / std (uint8 pixels
    scaled to [0, 1] first);
    ``len()`` is the number of batches. The sample is all images when ``count`` is at least the
    number available, else ``count`` indices drawn with ``seed``.

    Raises:
        DataError: ``count`` < 1, the reader holds no images, mean and std of other lengths or
            of a channel count images cannot have (CLI exit code 3); while iterating, an image
            holding NaN or inf.
    """

    def __init__(
        self,
        reader: ImageReader,
        count: int,
        input_size: tuple[int, int],
        mean: Sequence[float],
        std: Sequence[float],
        batch_size: int = 32,
        seed: int = 0,
        description: str = "",
    ) -> None:
        if count < 1:
            raise DataError(f"need at least one calibration image, got --images {count}")
        normalised_channels(mean, std)
        if len(reader) == 0:
            raise DataError("the calibration data holds no images")
        available = len(reader)
        if count >= available:
            self.indices = list(range(available))
        else:
            generator = torch.Generator().manual_seed(seed)
            self.indices = sorted(torch.randperm(available, generator=generator)[:count].tolist())
        self.reader = reader
        self.input_size = tuple(input_size)
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.batch_size = batch_size
        self.description = description

    def __len__(self) -> int:
        return (len(self.indices) + self.batch_size - 1) // self.batch_size

    @property
    def count(self) -> int:
        """The number of images in the sample (not batches)."""
        return len(self.indices)

    def __iter__(self) -> Iterator[Tensor]:
        for start in range(0, len(self.indices), self.batch_size):
            indices = self.indices[start : start + self.batch_size]
            batch = self._prepare(self.reader.read(indices))
            finite = torch.isfinite(batch.reshape(len(indices), -1)).all(dim=1)
            if not bool(finite.all()):
                bad = indices[int((~finite).nonzero()[0])]
                raise DataError(f"{self.description or 'calibration data'}: image {bad} holds NaN or inf values")
            yield batch

    def _prepare(self, images: np.ndarray) -> Tensor:
        return prepare_batch(images, self.input_size, self.mean, self.std)

    def describe(self) -> dict[str, Any]:
        """The plan's calibration record: the source's description and how many images it holds."""
        return {"source": self.description, "available": len(self.reader)}


def calibration_images(
    source: str,
    count: int,
    input_size: tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 32,
    seed: int = 0,
) -> CalibrationImages:
    """``count`` seeded images of ``source`` (see ``open_reader``) as re-iterable float batches
    (n, C, H, W) with C = len(mean), resized to ``input_size`` (H, W) and normalised with
    ``mean``/``std``.

    Raises:
        DataError: an unknown, missing or empty source, ``count`` < 1, or a channel count images
            cannot have (CLI exit code 3).
    """
    reader, description = open_reader(source, normalised_channels(mean, std), tuple(input_size))
    return CalibrationImages(reader, count, input_size, mean, std, batch_size, seed, description)


def images_for(source: Any, data: str, count: int, *, batch_size: int = 32, seed: int = 0) -> CalibrationImages:
    """``count`` seeded images of ``data`` prepared for the model whose input contract is
    ``source`` (a ``ModelSource``: its input size H x W, its mean and std).

    Returns re-iterable float batches (n, C, H, W). Raises ``DataError`` for an empty or
    unreadable source and ``BadInputError`` for an unknown one."""
    return calibration_images(data, count, tuple(source.input_size), source.mean, source.std, batch_size, seed)


def load_images(data: str, model: Any, count: int = 128, *, seed: int = 0) -> torch.Tensor:
    """``count`` seeded images of ``data`` (``demo``, an image folder, CIFAR batches, a .npy/.npz
    or a RecordIO; see ``open_reader``) prepared as ``model`` expects them: a module foadx built,
    loaded or pruned (its provenance gives the input size, channels, mean and std).

    Returns:
        one float32 tensor (count, C, H, W), e.g. the calibration images of ``foadx.prune``.

    Raises:
        BadInputError: ``model`` carries no provenance; DataError: unreadable or empty data.
    """
    from foadx.provenance import require_provenance

    source = require_provenance(model, "load_images").source
    return torch.cat(list(images_for(source, data, count, batch_size=count, seed=seed)))
