"""Calibration readers against files written here by independent writers."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from foadx.data import calibration_images
from foadx.data.calibration import read_cifar_batch
from foadx.errors import DataError


def test_demo_digits_are_real_mnist():
    data = np.load(os.path.join(os.path.dirname(__import__("foadx.data").data.__file__), "demo_digits.npz"))
    assert data["images"].shape == (5000, 28, 28) and data["images"].dtype == np.uint8
    assert sorted(set(data["labels"].tolist())) == list(range(10))
    assert data["images"][:, 0, 0].max() == 0  # MNIST borders are black


def test_cifar_batch_written_by_pickle(tmp_path):
    pixels = np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3072)
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps({b"data": pixels, b"labels": [3, 7]}, protocol=2))
    images, labels = read_cifar_batch(tmp_path / "data_batch_1")
    assert labels == [3, 7]
    assert images.shape == (2, 32, 32, 3)
    assert images[1, 0, 1, 2] == pixels[1, 2 * 1024 + 1]  # channel-major CIFAR layout
    batches = list(calibration_images(str(tmp_path), 2, (32, 32), (0.0,) * 3, (1.0,) * 3))
    torch.testing.assert_close(batches[0][1, 2, 0, 1], torch.tensor(pixels[1, 2 * 1024 + 1] / 255.0, dtype=torch.float32))


def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (tmp_path / "data_batch_1").write_bytes(pickle.dumps({b"data": Exploit()}))
    with pytest.raises(DataError, match="refusing to load"):
        read_cifar_batch(tmp_path / "data_batch_1")
    assert not marker.exists()


def test_image_folder_and_npz(tmp_path):
    folder = tmp_path / "imgs" / "class_a"
    folder.mkdir(parents=True)
    for index in range(5):
        Image.fromarray(np.full((20, 24, 3), index * 40, dtype=np.uint8)).save(folder / f"{index}.png")
    images = calibration_images(str(tmp_path / "imgs"), 3, (16, 16), (0.0,) * 3, (1.0,) * 3, batch_size=2, seed=1)
    batches = list(images)
    assert [b.shape[0] for b in batches] == [2, 1]
    assert batches[0].shape[1:] == (3, 16, 16)
    again = list(calibration_images(str(tmp_path / "imgs"), 3, (16, 16), (0.0,) * 3, (1.0,) * 3, batch_size=2, seed=1))
    assert all(torch.equal(a, b) for a, b in zip(batches, again))
    array = np.random.default_rng(0).random((4, 3, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "x.npz", images=array)
    loaded = next(iter(calibration_images(str(tmp_path / "x.npz"), 4, (8, 8), (0.0,) * 3, (1.0,) * 3)))
    torch.testing.assert_close(loaded, torch.from_numpy(array))


def test_bad_sources(tmp_path):
    with pytest.raises(DataError, match="not found"):
        calibration_images(str(tmp_path / "missing"), 4, (8, 8), (0.0,) * 3, (1.0,) * 3)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images found"):
        calibration_images(str(tmp_path / "empty"), 4, (8, 8), (0.0,) * 3, (1.0,) * 3)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    images = calibration_images(str(tmp_path), 1, (8, 8), (0.0,) * 3, (1.0,) * 3)
    with pytest.raises(DataError, match="cannot decode"):
        list(images)


def test_labeled_cifar_and_class_folders(tmp_path):
    from PIL import Image

    from foadx.data.labeled import open_labeled

    rng = np.random.default_rng(0)
    for name, labels in (("data_batch_1", [3, 7]), ("data_batch_2", [1]), ("test_batch", [9, 0, 4])):
        pixels = rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8)
        (tmp_path / "cifar").mkdir(exist_ok=True)
        (tmp_path / "cifar" / name).write_bytes(pickle.dumps({b"data": pixels, b"labels": labels}, protocol=2))
    train, test = open_labeled(str(tmp_path / "cifar"), "train"), open_labeled(str(tmp_path / "cifar"), "test")
    assert train.labels.tolist() == [3, 7, 1] and test.labels.tolist() == [9, 0, 4]
    expected = pickle.loads((tmp_path / "cifar" / "test_batch").read_bytes())[b"data"][2].reshape(3, 32, 32).transpose(1, 2, 0)
    np.testing.assert_array_equal(test.load(2), expected)

    for split, classes in (("train", ("cat", "dog")), ("val", ("cat", "dog"))):
        for label, name in enumerate(classes):
            folder = tmp_path / "tree" / split / name
            folder.mkdir(parents=True)
            Image.fromarray(np.full((5, 6, 3), 40 * label + (split == "val"), np.uint8)).save(folder / "a.png")
    tree_train = open_labeled(str(tmp_path / "tree"), "train")
    tree_test = open_labeled(str(tmp_path / "tree"), "test")
    assert tree_train.labels.tolist() == [0, 1] and tree_test.load(1)[0, 0].tolist() == [41, 41, 41]
