"""Face data readers against files written here by independent writers, and the 10-fold
verification protocol on a score set with a worked answer."""

from __future__ import annotations

import io
import pickle
import struct

import numpy as np
import pytest
from PIL import Image

from foadx.data.decode import decode_rgb
from foadx.data.labeled import open_labeled
from foadx.data.recordio import MAGIC, FaceRecordDataset, RecordFile, read_property, unpack_image_record
from foadx.data.verification import read_lfw_pairs, read_pairs, read_verification_bin
from foadx.errors import DataError
from foadx.evaluate import pair_distances, verify_pairs

MAGIC_LE = struct.pack("<I", MAGIC)


def write_recordio(path, records: list[bytes]) -> None:
    """An independent writer following dmlc-core's RecordIOWriter::WriteRecord: split wherever
    the payload holds the magic word at a 4-byte-aligned offset, drop those 4 bytes."""
    index_lines = []
    with open(path, "wb") as stream:
        for key, data in enumerate(records):
            index_lines.append(f"{key}\t{stream.tell()}")
            start = 0
            chunks = []
            for offset in range(0, len(data) - len(data) % 4, 4):
                if data[offset:offset + 4] == MAGIC_LE:
                    chunks.append(data[start:offset])
                    start = offset + 4
            chunks.append(data[start:])
            for number, chunk in enumerate(chunks):
                if len(chunks) == 1:
                    flag = 0
                else:
                    flag = 1 if number == 0 else (3 if number == len(chunks) - 1 else 2)
                stream.write(MAGIC_LE + struct.pack("<I", (flag << 29) | len(chunk)) + chunk)
                stream.write(b"\x00" * ((4 - len(chunk) % 4) % 4))
    path.with_suffix(".idx").write_text("\n".join(index_lines) + "\n")


def pack(label, image: bytes, identifier: int = 0) -> bytes:
    """mx.recordio.pack: header <IfQQ; a label array goes after the header with flag = its size."""
    if isinstance(label, (list, tuple)):
        values = np.asarray(label, dtype="<f4")
        return struct.pack("<IfQQ", values.size, 0.0, identifier, 0) + values.tobytes() + image
    return struct.pack("<IfQQ", 0, float(label), identifier, 0) + image


def png(value: int, size: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_recordio_framing_including_split_records(tmp_path):
    plain = b"abc"
    split_once = b"1234" + MAGIC_LE + b"5678xyz"
    split_twice = MAGIC_LE + b"ab" + b"cd" + MAGIC_LE + MAGIC_LE
    unaligned = b"x" + MAGIC_LE + b"yz"  # magic not at a 4-byte offset: not split
    write_recordio(tmp_path / "t.rec", [plain, split_once, split_twice, unaligned])
    records = RecordFile(tmp_path / "t.rec")
    assert [records.read(k) for k in range(4)] == [plain, split_once, split_twice, unaligned]
    raw = (tmp_path / "t.rec").read_bytes()
    assert raw.count(MAGIC_LE) == 1 + 2 + 4 + 1 + 1  # chunk headers (+1: the unaligned payload copy)


def test_insightface_layout(tmp_path):
    images = [png(10 * i) for i in range(5)]
    labels = [0, 0, 1, 1, 2]
    # record 0: (first identity record, end of identity records); images 1..5; identities 6..8
    records = [pack([6.0, 9.0], b"")] + [pack(label, image, i + 1) for i, (image, label) in enumerate(zip(images, labels))]
    records += [pack([1.0, 3.0], b""), pack([3.0, 5.0], b""), pack([5.0, 6.0], b"")]
    write_recordio(tmp_path / "train.rec", records)
    (tmp_path / "property").write_text("3,112,112\n")
    dataset = FaceRecordDataset(tmp_path / "train.rec")
    assert len(dataset) == 5
    image, label = dataset.raw(3)
    assert label == 1 and decode_rgb(image)[0, 0].tolist() == [30, 30, 30]
    header, _ = unpack_image_record(RecordFile(tmp_path / "train.rec").read(7))
    assert header.flag == 2 and header.label.tolist() == [3.0, 5.0]
    assert read_property(tmp_path) == (3, 112, 112)
    training = open_labeled(str(tmp_path / "train.rec"), task="face")
    assert training.labels.tolist() == labels
    with pytest.raises(DataError, match="record 0 is 8x8, property says 112x112"):
        training.load(0)
    (tmp_path / "property").write_text("3,8,8\n")
    assert open_labeled(str(tmp_path / "train.rec"), task="face").load(4).shape == (8, 8, 3)


def test_broken_recordio_files(tmp_path):
    write_recordio(tmp_path / "t.rec", [b"a" * 40, b"b" * 40])
    good = (tmp_path / "t.rec").read_bytes()
    (tmp_path / "t.rec").write_bytes(good[:60])
    with pytest.raises(DataError, match="truncated|past the end"):
        RecordFile(tmp_path / "t.rec").read(1)
    (tmp_path / "t.rec").write_bytes(b"\x00\x00\x00\x00" + good[4:])
    with pytest.raises(DataError, match="bad magic"):
        RecordFile(tmp_path / "t.rec").read(0)
    (tmp_path / "t.rec").write_bytes(good)
    (tmp_path / "t.idx").write_text("0\t0\n1\t99999\n")
    with pytest.raises(DataError, match="past the end"):
        RecordFile(tmp_path / "t.rec")
    with pytest.raises(DataError, match="not found"):
        RecordFile(tmp_path / "missing.rec")
    with pytest.raises(DataError, match="cannot decode"):
        decode_rgb(b"not an image")


def write_bin_py2_style(path, images: list[bytes], same: list[bool]) -> None:
    """Protocol 2, as insightface's Python 2 tooling wrote them."""
    path.write_bytes(pickle.dumps((images, same), protocol=2))


def test_verification_bin(tmp_path):
    images = [png(i) for i in range(6)]
    write_bin_py2_style(tmp_path / "lfw.bin", images, [True, False, True])
    pairs = read_pairs(tmp_path / "lfw.bin")
    assert pairs.images == images and pairs.same.tolist() == [True, False, True]
    write_bin_py2_style(tmp_path / "odd.bin", images[:5], [True, False, True])
    with pytest.raises(DataError, match="5 images for 3 pairs"):
        read_verification_bin(tmp_path / "odd.bin")
    (tmp_path / "weird.bin").write_bytes(pickle.dumps({"images": images}))
    with pytest.raises(DataError, match="expected a pickled"):
        read_verification_bin(tmp_path / "weird.bin")


class _CreatesAFile:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_malicious_bin_is_refused_and_runs_nothing(tmp_path):
    target = tmp_path / "pwned"
    (tmp_path / "evil.bin").write_bytes(pickle.dumps(([_CreatesAFile(target)], [True]), protocol=2))
    with pytest.raises(DataError, match="refusing to load"):
        read_verification_bin(tmp_path / "evil.bin")
    assert not target.exists()


def test_lfw_folder_and_pairs_txt(tmp_path):
    for name, count in (("Ann_A", 2), ("Bob_B", 1), ("Cy_C", 1)):
        (tmp_path / name).mkdir()
        for number in range(1, count + 1):
            (tmp_path / name / f"{name}_{number:04d}.jpg").write_bytes(png(number))
    lines = ["2\t1", "Ann_A\t1\t2", "Bob_B\t1\tCy_C\t1", "Ann_A\t2\t1", "Ann_A\t1\tCy_C\t1"]
    (tmp_path / "pairs.txt").write_text("\n".join(lines) + "\n")
    pairs = read_lfw_pairs(tmp_path)
    assert pairs.same.tolist() == [True, False, True, False]
    assert [p.name for p in pairs.images[:4]] == ["Ann_A_0001.jpg", "Ann_A_0002.jpg", "Bob_B_0001.jpg", "Cy_C_0001.jpg"]
    (tmp_path / "pairs.txt").write_text("\n".join(lines[:3]) + "\n")
    with pytest.raises(DataError, match="promises 2 x 2 x 1"):
        read_lfw_pairs(tmp_path)
    (tmp_path / "pairs.txt").write_text("1\t1\nAnn_A\t1\t7\nBob_B\t1\tCy_C\t1\n")
    with pytest.raises(DataError, match="does not exist"):
        read_lfw_pairs(tmp_path)


def test_ten_fold_protocol_worked_answer():
    """20 pairs in 10 folds of (same, different); same pairs at distance 0.5, different at 1.5,
    except one different pair at 0.3. Every training split is best at the first grid threshold
    above 0.5, i.e. 0.51; each test fold is then fully right except the one holding the 0.3 pair
    (1 of 2 right). Accuracy = (9 * 1 + 0.5) / 10 = 0.95; population std = 0.15."""
    same = np.tile([True, False], 10)
    distances = np.where(same, 0.5, 1.5)
    distances[7] = 0.3
    result = verify_pairs(distances, same)
    assert result.accuracy == pytest.approx(0.95)
    assert result.accuracy_std == pytest.approx(0.15)
    assert result.thresholds == pytest.approx([0.51] * 10)
    assert result.tar is None  # 9 negatives per training split cannot measure FAR = 1e-3


def test_tar_at_far_on_a_separable_set():
    rng = np.random.default_rng(0)
    same = np.tile([True] * 300 + [False] * 300, 10)  # LFW's layout: 6,000 pairs
    distances = np.where(same, rng.uniform(0.2, 0.9, same.size), rng.uniform(1.0, 2.0, same.size))
    result = verify_pairs(distances, same)
    assert result.accuracy == 1.0 and result.tar == 1.0 and result.far <= 1e-3


def test_pair_distances_normalise_flip_summed_embeddings():
    embeddings = np.array([[3.0, 0.0], [0.0, 2.0], [1.0, 1.0], [2.0, 2.0]])
    # pair 0: unit vectors (1,0) and (0,1): squared distance 2; pair 1: same direction: 0
    np.testing.assert_allclose(pair_distances(embeddings), [2.0, 0.0], atol=1e-12)
