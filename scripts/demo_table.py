"""Prints the accuracy table of `make demo` from its pipeline's stage records (demo-out/pipeline/) and
`foadx eval --report` files in demo-out/.

    .venv/bin/python scripts/demo_table.py demo-out
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

CRITERIA = ("foad", "l1", "random")


def record(folder: Path, stage: str) -> dict:
    return json.loads((folder / "pipeline" / stage / "stage.json").read_text())["record"]


def main(folder: Path) -> None:
    trained, pruned, tuned = record(folder, "train"), record(folder, "prune"), record(folder, "finetune")
    base_macs = pruned["macs"]["foad"]["before"]
    print("\nMobileFaceNet at 32x32 on the embedded MNIST digits; held-out top-1 (1,000 images, every 5th of each class)")
    print(f"baseline (trained here): {trained['accuracy']['unpruned']['top1']:.4f}, {base_macs / 1e6:.2f}M MACs\n")
    print("| criterion | MACs | MACs removed | after pruning (+BN re-estimate) | after fine-tuning |")
    print("|---|---|---|---|---|")
    for criterion in CRITERIA:
        macs = pruned["macs"][criterion]["after"]
        print(f"| {criterion} | {macs / 1e6:.2f}M | {1 - macs / base_macs:.1%} | "
              f"{pruned['accuracy'][criterion]['top1']:.4f} | {tuned['accuracy'][criterion]['top1']:.4f} |")
    onnx = folder / "eval-digits-foad-tuned-onnx.json"
    if onnx.is_file():
        print(f"\nFOAD fine-tuned, exported to ONNX and evaluated in onnxruntime: {json.loads(onnx.read_text())['top1']:.4f}")
    face = folder / "eval-face.json"
    if face.is_file():
        result = json.loads(face.read_text())
        print(f"face path (ArcFace on digits 0-6, open-set pairs of 7-9, 10 folds): "
              f"{result['accuracy']:.4f} +- {result['accuracy_std']:.4f}; TAR {result['tar']:.4f} at FAR {result['far']:.1e}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "demo-out"))
