"""The model package insightface 2.x reads: ``manifest.json`` (manifest version 2) and the
``MODEL.LICENSE`` it must name, beside the ONNX file.

With the manifest, ``insightface.model_zoo.get_model(folder, model_task="recognition")`` takes
the preprocessing, input size and embedding width from it (and checks the file's SHA-256)
instead of guessing them from node names.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from foadx._version import __version__
from foadx.atomic import atomic_path, write_json
from foadx.errors import BadInputError
from foadx.export.metadata import load_onnx

MANIFEST = "manifest.json"
LICENSE = "MODEL.LICENSE"
INSIGHTFACE_PIXEL_MEAN = 127.5  # (x - 127.5) / 127.5 on 0..255 pixels: foadx's mean = std = 0.5 on x / 255
INSIGHTFACE_PIXEL_STD = 127.5


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def model_id(path: Path) -> str:
    """insightface's model ids: a letter or digit, then up to 127 of [A-Za-z0-9._-]."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", path.stem).lstrip("._-")[:128]
    return cleaned or "foadx-model"


def write_insightface_package(onnx_path: str | Path, metadata: dict[str, Any]) -> dict[str, Any]:
    """Writes the manifest and licence beside ``onnx_path``; returns the manifest. A
    ``manifest.json`` that foadx did not write is never replaced."""
    onnx_path = Path(onnx_path)
    folder = onnx_path.parent
    existing = folder / MANIFEST
    if existing.exists() and '"generator": "foadx' not in existing.read_text(errors="replace")[:4096]:
        raise BadInputError(f"{existing} exists and foadx did not write it: export into another folder")
    _, _, height, width = metadata["input_shape"]
    embedding = load_onnx(onnx_path).graph.output[0].type.tensor_type.shape.dim[-1].dim_value
    manifest = {
        "manifest_version": 2,
        "model_id": model_id(onnx_path),
        "display_name": f"{metadata['source_model'].get('spec', onnx_path.stem)} (foadx)",
        "license": LICENSE,
        "generator": f"foadx {__version__}",
        "tasks": {"recognition": {
            "file": onnx_path.name,
            "sha256": _sha256(onnx_path),
            "preprocessing": {"mean": INSIGHTFACE_PIXEL_MEAN, "std": INSIGHTFACE_PIXEL_STD},
            "preprocessing_version": "insightface-arcface-1",
            "input_size": [height, width],
            "embedding_dimension": embedding,
        }},
    }
    with atomic_path(folder / LICENSE) as temporary:
        temporary.write_text(
            f"{onnx_path.name}: {metadata['source_model'].get('spec')}, exported by foadx {__version__}.\n"
            "foadx does not know the licence of these weights. State it here before distributing this package.\n")
    write_json(existing, manifest)
    return manifest
