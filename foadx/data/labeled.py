"""Labelled images for fine-tuning and evaluation: the demo digits, CIFAR batches, class folders,
insightface RecordIO; plus verification pairs (``.bin``, LFW, or built from held-out demo classes).

Every source gives uint8 images (H, W, C) by index and integer labels; decoding is lazy where the
source is encoded (folders, RecordIO), so DataLoader workers share the work.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from foadx.data.calibration import DEMO_FILE, IMAGE_SUFFIXES, read_cifar_batch
from foadx.data.decode import decode_rgb
from foadx.data.verification import PairSet
from foadx.errors import DataError

DEMO_FACE_TRAIN_CLASSES = tuple(range(7))  # digits 0-6 are the "identities" a margin head sees
DEMO_TEST_EVERY = 5  # the file is sorted by class: every 5th image is a stratified 20% test split


@dataclass
class LabeledImages:
    """Images (array or lazily decoded) and their integer labels."""

    load: Callable[[int], np.ndarray]
    labels: np.ndarray
    description: str

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def classes(self) -> int:
        return int(self.labels.max()) + 1 if len(self.labels) else 0

    def subset(self, indices: np.ndarray, description: str) -> "LabeledImages":
        indices = np.asarray(indices)
        return LabeledImages(lambda i, load=self.load: load(int(indices[i])), self.labels[indices], description)


def _array_source(images: np.ndarray, labels: np.ndarray, description: str) -> LabeledImages:
    if images.ndim == 3:
        images = images[..., None]
    return LabeledImages(lambda i: images[i], np.asarray(labels, dtype=np.int64), description)


def _demo(split: str, task: str) -> LabeledImages:
    with np.load(DEMO_FILE) as loaded:
        images, labels = loaded["images"], loaded["labels"].astype(np.int64)
    everything = _array_source(images, labels, "demo digits")
    if task == "face":
        train = np.flatnonzero(np.isin(labels, DEMO_FACE_TRAIN_CLASSES))
        return everything.subset(train, f"demo digits {DEMO_FACE_TRAIN_CLASSES[0]}-{DEMO_FACE_TRAIN_CLASSES[-1]}")
    held_out = np.arange(len(labels)) % DEMO_TEST_EVERY == DEMO_TEST_EVERY - 1  # every 5th image of each class
    indices = np.flatnonzero(~held_out if split == "train" else held_out)
    return everything.subset(indices, f"demo digits ({split}: {len(indices)})")


def _cifar(path: Path, split: str) -> LabeledImages:
    names = sorted(path.glob("data_batch_*")) if split == "train" else [path / "test_batch"]
    names = [name for name in names if name.is_file()]
    if not names:  # CIFAR-100 layout
        names = [p for p in [path / ("train" if split == "train" else "test")] if p.is_file()]
    if not names:
        raise DataError(f"no CIFAR {split} batches in {path}")
    parts = [read_cifar_batch(name) for name in names]
    images = np.concatenate([images for images, _ in parts])
    labels = np.concatenate([np.asarray(labels, dtype=np.int64) for _, labels in parts])
    return _array_source(images, labels, f"CIFAR {split} {path.name}")


def _folder(path: Path, split: str) -> LabeledImages:
    for name in ((split,) if split == "train" else ("val", "test")):
        if (path / name).is_dir():
            path = path / name
            break
    classes = sorted(p.name for p in path.iterdir() if p.is_dir())
    files, labels = [], []
    for label, name in enumerate(classes):
        for file in sorted((path / name).rglob("*")):
            if file.suffix.lower() in IMAGE_SUFFIXES and file.is_file():
                files.append(file)
                labels.append(label)
    if not files:
        raise DataError(f"no class folders with images in {path}")
    return LabeledImages(lambda i: decode_rgb(files[i]), np.asarray(labels, dtype=np.int64), f"folder {path}")


def _records(path: Path) -> LabeledImages:
    """insightface RecordIO; where a ``property`` file gives the aligned size, every image must
    have it (a misaligned set would otherwise be silently resized)."""
    from foadx.data.recordio import FaceRecordDataset, read_property

    dataset = FaceRecordDataset(path)
    labels = np.asarray([dataset.raw(i)[1] for i in range(len(dataset))], dtype=np.int64)
    size = read_property(path.parent)[1:] if (path.parent / "property").is_file() else None

    def load(index: int) -> np.ndarray:
        image = decode_rgb(dataset.raw(index)[0], f"{path} record {index}")
        if size is not None and image.shape[:2] != size:
            raise DataError(f"{path} record {index} is {image.shape[0]}x{image.shape[1]}, property says {size[0]}x{size[1]}")
        return image

    return LabeledImages(load, labels, f"records {path.name}")


def open_labeled(source: str, split: str = "train", task: str = "classify") -> LabeledImages:
    """``demo``, a CIFAR folder, a class-per-folder tree (optionally with train/ and val/), or
    an insightface ``train.rec``."""
    if split not in ("train", "test"):
        raise DataError(f"split must be train or test, got {split!r}")
    if source == "demo":
        return _demo(split, task)
    path = Path(source)
    if not path.exists():
        raise DataError(f"training data not found: {source}")
    if path.suffix == ".rec":
        return _records(path)
    if path.is_dir() and (any(path.glob("data_batch_*")) or (path / "test_batch").is_file()):
        return _cifar(path, split)
    if path.is_dir():
        return _folder(path, split)
    raise DataError(f"unsupported training data {source}: demo, CIFAR batches, class folders or a .rec file")


def demo_pairs(pairs_per_fold: int = 150, folds: int = 10, seed: int = 0) -> tuple[np.ndarray, PairSet]:
    """Open-set pairs from the demo digits the face demo never trains on (7, 8, 9): per fold
    ``pairs_per_fold`` same-class then as many different-class pairs. Returns (images, pairs)
    where the pair set's entries index the image array."""
    with np.load(DEMO_FILE) as loaded:
        images, labels = loaded["images"], loaded["labels"]
    held_out = np.flatnonzero(~np.isin(labels, DEMO_FACE_TRAIN_CLASSES))
    generator = torch.Generator().manual_seed(seed)
    by_class = {c: held_out[labels[held_out] == c] for c in np.unique(labels[held_out])}
    classes = sorted(by_class)

    def pick(members: np.ndarray) -> int:
        return int(members[torch.randint(len(members), (1,), generator=generator).item()])

    chosen, same = [], []
    for _ in range(folds):
        for is_same in (True, False):
            for _ in range(pairs_per_fold):
                first, second = torch.randperm(len(classes), generator=generator)[:2].tolist()
                a = pick(by_class[classes[first]])
                b = pick(by_class[classes[first if is_same else second]])
                chosen += [a, b]
                same.append(is_same)
    return images[..., None], PairSet(chosen, np.asarray(same), f"demo digits {classes} pairs")
