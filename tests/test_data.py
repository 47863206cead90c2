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


def test_compressed_npz_of_real_images_loads(tmp_path):
    from foadx.data.calibration import DEMO_FILE

    with np.load(DEMO_FILE) as demo:  # MNIST digits: mostly black, numpy compresses them ~5x
        digits = np.repeat(demo["images"], 4, axis=0)  # 15.7 MB of pixels
    np.savez_compressed(tmp_path / "digits.npz", images=digits)
    np.savez_compressed(tmp_path / "blank.npz", images=np.zeros((64, 32, 32, 3), np.uint8))  # 2,000x, but small
    batch = next(iter(calibration_images(str(tmp_path / "digits.npz"), 20_000, (28, 28), (0.0,), (1.0,), batch_size=8)))
    torch.testing.assert_close(batch[:, 0], torch.from_numpy(digits[:8]).float() / 255.0)
    assert len(calibration_images(str(tmp_path / "blank.npz"), 64, (32, 32), (0.0,) * 3, (1.0,) * 3).indices) == 64


def test_a_truncated_npz_member_is_refused_before_it_is_read(tmp_path):
    import zipfile

    with zipfile.ZipFile(tmp_path / "short.npz", "w") as archive, archive.open("images.npy", "w") as member:
        np.lib.format.write_array_header_1_0(member, {"descr": "|u1", "fortran_order": False, "shape": (10**9, 32, 32)})
        member.write(bytes(3072))
    with pytest.raises(DataError, match=r"short.npz\['images'\] is truncated: its header claims 1,024,000,000,000 "
                                        r"bytes of array data \(1000000000x32x32 uint8\), the file holds 3,072"):
        calibration_images(str(tmp_path / "short.npz"), 4, (32, 32), (0.0,) * 3, (1.0,) * 3)


def _photo(height: int, width: int) -> np.ndarray:
    """A synthetic photograph: smooth colour gradients, hard-edged discs and sensor noise."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    image = np.stack([x, y, 1 - (x + y) / 2], axis=-1) * 200
    for cy, cx, r, colour in zip(rng.random(12) * height, rng.random(12) * width, rng.random(12) * height / 6,
                                 rng.integers(0, 256, (12, 3))):
        disc = (np.mgrid[0:height, 0:width][0] - cy) ** 2 + (np.mgrid[0:height, 0:width][1] - cx) ** 2 < r * r
        image[disc] = colour
    return np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)


def test_huge_image_files_are_shrunk_while_decoding_within_the_documented_tolerance(tmp_path):
    import tracemalloc

    from foadx.data.decode import decode_rgb
    from foadx.data.transforms import prepare_batch

    photo = _photo(1200, 1600)
    (tmp_path / "photos").mkdir()
    Image.fromarray(photo).save(tmp_path / "photos" / "photo.png")
    assert decode_rgb(tmp_path / "photos" / "photo.png", target_size=(32, 32)).shape == (133, 177, 3)  # 1/9, >= 4x32
    assert decode_rgb(tmp_path / "photos" / "photo.png", target_size=(224, 224)).shape == (1200, 1600, 3)  # < 8x
    (batch,) = calibration_images(str(tmp_path / "photos"), 1, (32, 32), (0.0,) * 3, (1.0,) * 3)
    full_size = prepare_batch(photo[None], (32, 32), (0.0,) * 3, (1.0,) * 3)
    assert (batch - full_size).abs().max() <= 9 / 255 and (batch - full_size).abs().mean() <= 0.5 / 255
    Image.new("L", (6000, 6000), 128).save(tmp_path / "photos" / "huge.png")  # 36 MP, 35 KB on disk
    tracemalloc.start()
    try:
        list(calibration_images(str(tmp_path / "photos"), 2, (32, 32), (0.0,) * 3, (1.0,) * 3))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20, peak  # it was 216 MB of numpy arrays (the RGB image, then stacked) before Pillow's own


def test_fine_tune_and_eval_folders_shrink_a_huge_image_while_decoding(tmp_path):
    """The class folders finetune and eval read decode like the calibration readers: an image far
    larger than the model's input is shrunk in Pillow, not turned into float at full size."""
    from PIL import Image

    from foadx.data.labeled import open_labeled

    for name in ("a", "b"):
        (tmp_path / "train" / name).mkdir(parents=True)
        Image.new("L", (2400, 2400), 128).save(tmp_path / "train" / name / "big.png")
    full = open_labeled(str(tmp_path), "train").load(0)
    shrunk = open_labeled(str(tmp_path), "train", input_size=(32, 32)).load(0)
    assert full.shape[:2] == (2400, 2400) and 128 <= shrunk.shape[0] < 2400 and shrunk.shape[0] == shrunk.shape[1]
