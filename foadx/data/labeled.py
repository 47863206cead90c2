"""Labelled images for fine-tuning and evaluation: the demo digits, CIFAR batches, class folders,
insightface RecordIO; plus verification pairs (``.bin``, LFW, or built from held-out demo classes).

Every source gives uint8 images (H, W, c) by index and integer labels; decoding is lazy where the
source is encoded (folders, RecordIO), so DataLoader workers share the work. Encoded files are
decoded to RGB, or RGBA with their alpha for a 4-channel model (``transforms.file_mode``); the
batch's conversion to the model's channels is ``transforms.prepare_batch``'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from foadx.data.calibration import DEMO_FILE, IMAGE_SUFFIXES, read_cifar_batch
from foadx.data.decode import decode_rgb
from foadx.data.layout import describe_data
from foadx.data.transforms import file_mode
from foadx.data.verification import PairSet
from foadx.errors import DataError

DEMO_FACE_TRAIN_CLASSES = tuple(range(7))  # digits 0-6 are the "identities" a margin head sees
DEMO_TEST_EVERY = 5  # the file is sorted by class: every 5th image is a stratified 20% test split
Size = tuple[int, int] | None  # the (H, W) of the model the images are for, when known


@dataclass
class LabeledImages:
    """Images (array or lazily decoded) and their integer labels."""

    load: Callable[[int], np.ndarray]
    labels: np.ndarray
    description: str
    split: dict[str, Any] | None = None  # the held-out split made here (--val-split), recorded in artifacts
    notes: tuple[str, ...] = field(default_factory=tuple)  # what was ignored, for the user to see

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def classes(self) -> int:
        return int(self.labels.max()) + 1 if len(self.labels) else 0

    def subset(self, indices: np.ndarray, description: str) -> "LabeledImages":
        indices = np.asarray(indices)
        return LabeledImages(lambda i, load=self.load: load(int(indices[i])), self.labels[indices], description,
                             self.split, self.notes)


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


SPLIT_FOLDERS = {"train": ("train",), "test": ("val", "test")}


def _images_in(folder: Path) -> list[Path]:
    return [file for file in sorted(folder.iterdir()) if file.is_file() and file.suffix.lower() in IMAGE_SUFFIXES]


def _class_tree(root: Path, classes: list[str], mode: str, size: Size) -> LabeledImages:
    """The images under ``root/<class>/`` labelled by their class's index in ``classes``;
    images loose in ``root`` are left out and named in the notes."""
    present = sorted(p.name for p in root.iterdir() if p.is_dir())
    unknown = [name for name in present if name not in classes]
    if unknown:
        raise DataError(f"{root} has class folders the training split lacks: {', '.join(unknown[:5])}")
    files, labels = [], []
    for label, name in enumerate(classes):
        if not (root / name).is_dir():
            continue
        for file in sorted((root / name).rglob("*")):
            if file.suffix.lower() in IMAGE_SUFFIXES and file.is_file():
                files.append(file)
                labels.append(label)
    if not files:
        raise DataError(f"no class folders with images in {root}")
    loose = _images_in(root)
    notes = (f"ignored {len(loose)} image(s) loose in {root} (e.g. {loose[0].name}): images must sit in class folders",) if loose else ()
    return LabeledImages(lambda i: decode_rgb(files[i], mode=mode, target_size=size), np.asarray(labels, dtype=np.int64), f"folder {root}", notes=notes)


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) indices: ``round(fraction * n)`` of each class's n images held out (at
    least one where a class has two or more), chosen by a seeded shuffle within the class."""
    if not 0.0 < fraction < 1.0:
        raise DataError(f"--val-split must be between 0 and 1, got {fraction}")
    rng = np.random.default_rng(seed)
    held_out = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        count = min(len(members) - 1, max(1, round(fraction * len(members)))) if len(members) > 1 else 0
        held_out.extend(members[:count].tolist())
    held = np.zeros(len(labels), dtype=bool)
    held[held_out] = True
    return np.flatnonzero(~held), np.flatnonzero(held)


def _folder(path: Path, split: str, val_split: float | None, seed: int, mode: str, size: Size) -> LabeledImages:
    """A class-per-folder tree with ``train/`` and ``val/`` (or ``test/``), or without a split
    and a stratified ``val_split`` held out; evaluating an unsplit folder takes all of it."""
    split_folders = [name for name in ("train", "val", "test") if (path / name).is_dir()]
    if split_folders:
        if "train" not in split_folders:
            raise DataError(f"{path} has {'/ and '.join(split_folders)}/ but no train/ folder")
        classes = sorted(p.name for p in (path / "train").iterdir() if p.is_dir())
        chosen = next((path / name for name in SPLIT_FOLDERS[split] if name in split_folders), None)
        if chosen is None:
            raise DataError(f"{path} has train/ but no val/ or test/ folder to evaluate on")
        images = _class_tree(chosen, classes, mode, size)
        loose = _images_in(path)
        if loose:
            images = replace(images, notes=images.notes + (f"ignored {len(loose)} image(s) loose in {path}",))
        return images
    whole = _class_tree(path, sorted(p.name for p in path.iterdir() if p.is_dir()), mode, size)
    if val_split is None:
        if split == "train":
            raise DataError(f"{path} has class folders but no train/ and val/ split: add them, or pass --val-split 0.2 "
                            "to hold out a stratified, seeded 20% for evaluation")
        return whole
    train, held_out = stratified_split(whole.labels, val_split, seed)
    record = {"val_split": val_split, "seed": seed, "train_images": len(train), "held_out_images": len(held_out)}
    chosen = train if split == "train" else held_out
    part = whole.subset(chosen, f"folder {path} ({'train' if split == 'train' else 'held-out'} {len(chosen)} of {len(whole)})")
    return replace(part, split=record)


def _records(path: Path, mode: str, size: Size) -> LabeledImages:
    """insightface RecordIO; where a ``property`` file gives the aligned size, every image must
    have it (a misaligned set would otherwise be silently resized)."""
    from foadx.data.recordio import FaceRecordDataset, read_property

    dataset = FaceRecordDataset(path)
    labels = np.asarray([dataset.raw(i)[1] for i in range(len(dataset))], dtype=np.int64)
    aligned = read_property(path.parent)[1:] if (path.parent / "property").is_file() else None

    def load(index: int) -> np.ndarray:
        image = decode_rgb(dataset.raw(index)[0], f"{path} record {index}", mode=mode, target_size=size)
        if aligned is not None and image.shape[:2] != aligned:
            raise DataError(f"{path} record {index} is {image.shape[0]}x{image.shape[1]}, property says "
                            f"{aligned[0]}x{aligned[1]}")
        return image

    return LabeledImages(load, labels, f"records {path.name}")


def open_labeled(source: str, split: str = "train", task: str = "classify", *,
                 val_split: float | None = None, seed: int = 0, channels: int = 3,
                 input_size: Size = None) -> LabeledImages:
    """Labelled images from ``demo``, a CIFAR folder, a class-per-folder tree (with train/ and
    val/, or ``val_split`` held out of an unsplit one), an insightface folder or ``train.rec``,
    for a model of ``channels`` input channels (1, 3 or 4: which form files decode to) and
    ``input_size`` (H, W): image files far larger are shrunk while they decode (``decode_rgb``).

    Raises:
        DataError: an unknown split, a layout without the split asked for, or ``channels`` not
            1, 3 or 4 (CLI exit code 3).
    """
    if split not in ("train", "test"):
        raise DataError(f"split must be train or test, got {split!r}")
    mode = file_mode(channels)
    layout = describe_data(source)
    if val_split is not None and layout.kind != "folder":
        raise DataError(f"--val-split splits an image folder without train/ and val/; {source} is {layout.kind} data")
    if layout.kind == "demo":
        return _demo(split, task)
    if layout.kind in ("records", "insightface"):
        if layout.train_records is None:
            raise DataError(f"{source} holds verification sets ({layout.evidence()}) but no train.rec to train on")
        return _records(layout.train_records, mode, input_size)
    if layout.kind == "cifar":
        return _cifar(Path(source), split)
    if layout.kind == "folder":
        return _folder(Path(source), split, val_split, seed, mode, input_size)
    raise DataError(f"{source} holds verification pairs ({layout.evidence()}), not labelled images")


def identity_images(source: str, *, val_split: float | None = None, seed: int = 0) -> LabeledImages:
    """The identity-labelled images an all-pairs verification scores: the demo digits the face
    demo never trains on (7, 8, 9), or the evaluation images of a folder with one folder per
    identity (its val/ or test/, its held-out ``val_split``, else all of it), a ``.rec`` or an
    insightface folder's ``train.rec``.

    Raises:
        DataError: the source holds no identity-labelled images (CIFAR batches, verification pairs).
    """
    layout = describe_data(source)
    if layout.kind == "demo":
        with np.load(DEMO_FILE) as loaded:
            images, labels = loaded["images"], loaded["labels"].astype(np.int64)
        held_out = np.flatnonzero(~np.isin(labels, DEMO_FACE_TRAIN_CLASSES))
        return _array_source(images, labels, "demo digits").subset(held_out, "demo digits 7-9")
    if layout.kind not in ("folder", "records", "insightface"):
        raise DataError(f"{source} holds {layout.evidence()}, not identity-labelled images (a folder per identity, "
                        "a .rec, or demo)")
    return open_labeled(source, "test", "face", val_split=val_split, seed=seed)


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
