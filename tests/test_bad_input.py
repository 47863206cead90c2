"""Every bad input is one line and exit 3 (never 1 "unexpected"), within seconds and bounded
memory, and leaves no output behind. One row per case: what to write, the command, the exit
code, words the message must contain. Each row failed (exit 1, a hang, or exit 0) before."""

from __future__ import annotations

import json
import pickle
import struct
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import error_line, run


def npy(name: str, array: np.ndarray) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        np.save(folder / name, array)
        return folder / name
    return make


def object_npz(folder: Path) -> Path:
    np.savez(folder / "objects.npz", images=np.array([object(), 1], dtype=object))
    return folder / "objects.npz"


def nested_cifar(folder: Path) -> Path:
    """8 KB of pickle whose nested lists share references: np.asarray would expand them to GBs."""
    row = [0] * 3072
    table = [row] * 2000
    (folder / "data_batch_1").write_bytes(pickle.dumps({b"data": [table] * 200, b"labels": [0]}, protocol=2))
    return folder / "data_batch_1"


def repeated_bin(folder: Path) -> Path:
    """One JPEG referenced 100,000 times: a quarter megabyte that decodes to gigabytes."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((112, 112, 3), np.uint8)).save(buffer, format="JPEG")
    jpeg = buffer.getvalue()
    (folder / "lfw.bin").write_bytes(pickle.dumps(([jpeg] * 100_000, [True] * 50_000), protocol=2))
    return folder / "lfw.bin"


def recordio_claiming(claim: float, label: float = 1.0) -> Callable[[Path], Path]:
    """A tiny insightface RecordIO whose record 0 claims ``claim`` images."""
    def make(folder: Path) -> Path:
        def record(flag: int, label_value: float, extra: bytes) -> bytes:
            payload = struct.pack("<IfQQ", flag, label_value, 0, 0) + extra
            return struct.pack("<II", 0xCED7230A, len(payload)) + payload + b"\0" * (-len(payload) % 4)
        header = record(2, 0.0, struct.pack("<ff", claim, claim))
        image = record(0, label, b"\xff\xd8not really a jpeg")
        (folder / "train.rec").write_bytes(header + image)
        (folder / "train.idx").write_text(f"0\t0\n1\t{len(header)}\n")
        (folder / "property").write_text("10,112,112")
        return folder / "train.rec"
    return make


def big_png(folder: Path) -> Path:
    """A decompression bomb: a PNG of 400 million pixels, a few hundred KB on disk."""
    import zlib

    width = height = 20_000
    raw = zlib.compress(b"\0" * ((width + 1) * 50), 9)  # the first rows only: the header is what counts
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    png += chunk(b"IDAT", raw) + chunk(b"IEND", b"")
    (folder / "images").mkdir()
    (folder / "images" / "bomb.png").write_bytes(png)
    return folder / "images"


def sixteen_bit_png(folder: Path) -> Path:
    from PIL import Image

    (folder / "deep").mkdir()
    Image.fromarray(np.full((40, 40), 60_000, np.uint16)).save(folder / "deep" / "a.png")
    return folder / "deep"


def deflate_bomb_npz(folder: Path) -> Path:
    """90 KB of DEFLATE zeros in an .npz whose images.npy is 90 MB of pixels: a 1,000x expansion."""
    import zipfile

    member = zipfile.ZipInfo("images.npy")
    member.compress_type = zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(folder / "bomb.npz", "w") as archive, archive.open(member, "w", force_zip64=True) as stream:
        np.lib.format.write_array_header_1_0(stream, {"descr": "|u1", "fortran_order": False, "shape": (3000, 3, 100, 100)})
        for _ in range(3):
            stream.write(bytes(30_000_000))
    return folder / "bomb.npz"


def huge_image_npy(folder: Path) -> Path:
    """One 9500x9500 grey image (90 MB, over Pillow's 89.5 M-pixel limit), written without holding it."""
    array = np.lib.format.open_memmap(folder / "huge.npy", mode="w+", dtype=np.uint8, shape=(1, 9500, 9500))
    del array
    return folder / "huge.npy"


def truncated_npy(folder: Path) -> Path:
    """1 KB of pixels under a header claiming 300 GB of them."""
    with open(folder / "claims.npy", "wb") as stream:
        np.lib.format.write_array_header_1_0(stream, {"descr": "|u1", "fortran_order": False,
                                                      "shape": (100_000_000, 3, 32, 32)})
        stream.write(bytes(1024))
    return folder / "claims.npy"


def plan_with(change: Callable[[dict], object]) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        artifact = folder / "art"
        artifact.mkdir()
        plan = {"schema_version": 1, "model": {"spec": "resnet56_cifar", "input_size": [32, 32]},
                "groups": [{"name": "layer1.0.conv1", "channels": 16, "kept": [0, 1]}], "output_layers": []}
        changed = change(plan)
        (artifact / "plan.json").write_text(changed if isinstance(changed, str) else json.dumps(plan))
        (artifact / "weights.pt").write_bytes(b"")
        return artifact
    return make


def onnx_with_bad_metadata(folder: Path) -> Path:
    import onnx

    from foadx.export import export_onnx
    from foadx.models import build_model

    export_onnx(build_model("resnet56_cifar"), folder / "m.onnx", opset=17, verify=False)
    model = onnx.load(str(folder / "m.onnx"))
    for prop in model.metadata_props:
        if prop.key == "foadx.source_model":
            prop.value = "{not json"
    onnx.save(model, str(folder / "m.onnx"))
    return folder / "m.onnx"


def weights_and_map(folder: Path) -> Path:
    import torch

    from foadx.models import build_model

    torch.save(build_model("resnet56_cifar").state_dict(), folder / "w.pt")
    (folder / "map.json").write_text(json.dumps({"^(conv)": r"\2"}))
    return folder / "w.pt"


PRUNE = ("prune", "resnet56_cifar", "--ratio", "0.3", "--images", "8", "--out", "{tmp}/out")
CASES = [
    # (id, make input -> path or None, command with {input} and {tmp}, exit code, words)
    ("big-endian npy", npy("be.npy", np.random.default_rng(0).random((8, 32, 32, 3)).astype(">f4")),
     ("prune", "resnet56_cifar", "--data", "{input}", "--ratio", "0.3", "--out", "{tmp}/out"), 0, ""),
    ("float npy in 0..255", npy("bright.npy", np.full((8, 32, 32, 3), 200.0, np.float32)),
     ("prune", "resnet56_cifar", "--data", "{input}", "--ratio", "0.3", "--out", "{tmp}/out"), 3, "divide by 255"),
    ("object npz", object_npz, ("prune", "resnet56_cifar", "--data", "{input}", "--ratio", "0.3",
                                "--out", "{tmp}/out"), 3, "cannot read"),
    ("huge image in an npy", huge_image_npy, ("prune", "resnet56_cifar", "--data", "{input}", "--ratio", "0.3",
                                              "--images", "1", "--out", "{tmp}/out"), 3, "at most 89,478,485 pixels"),
    ("DEFLATE-bomb npz", deflate_bomb_npz, ("prune", "resnet56_cifar", "--data", "{input}", "--ratio", "0.3",
                                            "--images", "8", "--out", "{tmp}/out"), 3, "expand at most 100x"),
    ("truncated npy", truncated_npy, ("prune", "resnet56_cifar", "--data", "{input}", "--ratio", "0.3",
                                      "--out", "{tmp}/out"), 3, "is truncated: its header claims 307,200,000,000 bytes"),
    ("nested-list CIFAR bomb", nested_cifar, ("prune", "resnet56_cifar", "--data", "{input}", "--ratio", "0.3",
                                              "--out", "{tmp}/out"), 3, "numpy array"),
    ("repeated-JPEG .bin bomb", repeated_bin, ("eval", "mobilefacenet", "--task", "face", "--data", "{input}"),
     3, "more than once"),
    ("RecordIO header claims 3e8 images", recordio_claiming(3e8),
     ("finetune", "mobilefacenet", "--data", "{input}", "--task", "face", "--out", "{tmp}/out"), 3, "index lists 2"),
    ("RecordIO NaN label", recordio_claiming(2, float("nan")),
     ("finetune", "mobilefacenet", "--data", "{input}", "--task", "face", "--out", "{tmp}/out", "--batch-size", "1"),
     3, "label"),
    ("decompression bomb", big_png, ("prune", "resnet56_cifar", "--data", "{input}", "--ratio", "0.3",
                                     "--out", "{tmp}/out"), 3, "too large"),
    ("16-bit PNG", sixteen_bit_png, ("prune", "resnet56_cifar", "--data", "{input}", "--ratio", "0.3",
                                     "--out", "{tmp}/out"), 3, "would clip"),
    ("plan without channels", plan_with(lambda plan: plan["groups"][0].pop("channels")),
     ("inspect", "{input}"), 3, "channels"),
    ("plan with NaN", plan_with(lambda plan: json.dumps(plan).replace("[0, 1]", "[0, NaN]")),
     ("inspect", "{input}"), 3, "kept"),
    ("deeply nested plan", plan_with(lambda plan: "[" * 100_000 + "]" * 100_000), ("inspect", "{input}"), 3, "corrupt"),
    ("plan with std 0", plan_with(lambda plan: plan["model"].update(std=[0.2, 0, 0.2])), ("inspect", "{input}"),
     3, "std"),
    ("bad JSON in ONNX metadata", onnx_with_bad_metadata, ("inspect", "{input}"), 3, "not valid JSON"),
    ("weights map with a bad group", weights_and_map,
     ("inspect", "resnet56_cifar", "--weights", "{input}", "--weights-map", "{tmp}/map.json"), 3, "weights map"),
    ("report path is a folder", None, ("eval", "resnet56_cifar", "--data", "demo", "--report", "{tmp}"), 3, "folder"),
    ("huge input size", None, ("inspect", "mobilefacenet", "--input-size", "100000"), 3, "1..8192"),
    ("round-to wider than every group", None, (*PRUNE, "--data", "demo", "--round-to", "1000"), 3, "nothing would"),
    ("unreachable target suggests coupled groups", None,
     ("prune", "mobilefacenet", "--data", "demo", "--images", "8", "--flops-target", "0.6", "--t", "1",
      "--out", "{tmp}/out"), 3, "--include-coupled also prunes"),
    ("empty --ratios", None, ("prune", "resnet56_cifar", "--data", "demo", "--ratios", "{tmp}/ratios.json",
                              "--out", "{tmp}/out"), 3, "names no group"),
]


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_bad_input(case, tmp_path):
    _, make, command, code, words = case
    made = make(tmp_path) if make else None
    (tmp_path / "ratios.json").write_text("{}")
    args = [part.format(input=made, tmp=tmp_path) for part in command]
    started = time.perf_counter()
    result = run(*args)
    assert time.perf_counter() - started < 60, "took too long"
    assert result.exit_code == code, result.output
    if code:
        assert words in error_line(result)
        assert not (tmp_path / "out").exists()
