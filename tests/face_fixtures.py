"""Small insightface-style dataset folders and image folders, written with independent writers
(the dmlc RecordIO framing, Python-2-style pickled .bin files, PNG files) from real digits."""

from __future__ import annotations

import io
import pickle

import numpy as np
from PIL import Image

from foadx.data.calibration import DEMO_FILE
from tests.test_face_data import pack, write_recordio


def digits(count_per_class: int, classes: range = range(10)) -> list[tuple[np.ndarray, int]]:
    with np.load(DEMO_FILE) as loaded:
        images, labels = loaded["images"], loaded["labels"]
    chosen = []
    for label in classes:
        members = np.flatnonzero(labels == label)[:count_per_class]
        chosen += [(np.repeat(images[i][..., None], 3, axis=2), int(label)) for i in members]
    return chosen


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def write_insightface_folder(folder, identities=range(7), per_identity=12, sets=("lfw", "cfp_fp")) -> None:
    """train.rec/.idx in insightface's layout (record 0 = identity range header, images, one
    record per identity with its image range), property, and one pairs .bin per name in sets
    built from digits 7-9 (never trained on): alternating same/different pairs."""
    samples = digits(per_identity, identities)
    first_identity_record = len(samples) + 1
    records = [pack([float(first_identity_record), float(first_identity_record + len(identities))], b"")]
    records += [pack(label, png(image), i + 1) for i, (image, label) in enumerate(samples)]
    for number, _ in enumerate(identities):
        records.append(pack([1.0 + number * per_identity, 1.0 + (number + 1) * per_identity], b""))
    folder.mkdir(parents=True, exist_ok=True)
    write_recordio(folder / "train.rec", records)
    (folder / "property").write_text(f"{len(identities)},28,28\n")
    held_out = digits(20, range(7, 10))
    by_class = {label: [image for image, l in held_out if l == label] for label in range(7, 10)}
    for offset, name in enumerate(sets):
        images, same = [], []
        for pair in range(40):
            a = 7 + (pair + offset) % 3
            b = a if pair % 2 == 0 else 7 + (pair + offset + 1) % 3
            images += [png(by_class[a][pair % 20]), png(by_class[b][(pair + 5) % 20])]
            same.append(pair % 2 == 0)
        (folder / f"{name}.bin").write_bytes(pickle.dumps((images, same), protocol=2))


def write_class_folder(root, per_class=(6, 5, 1), split: bool = False, loose: int = 0) -> None:
    """Class-per-folder PNGs of digits 0, 1, 2 (``per_class`` images each); ``split`` puts them
    under train/ and the same again under val/; ``loose`` images sit in the root itself."""
    samples = digits(max(per_class), range(len(per_class)))
    for label, count in enumerate(per_class):
        members = [image for image, l in samples if l == label][:count]
        for part in (("train", "val") if split else ("",)):
            target = root / part / f"class{label}"
            target.mkdir(parents=True, exist_ok=True)
            for number, image in enumerate(members):
                (target / f"{number}.png").write_bytes(png(image))
    for number in range(loose):
        (root / f"loose{number}.png").write_bytes(png(samples[0][0]))
