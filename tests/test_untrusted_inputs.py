"""Issue 23, kinds 11-13: a weights map, a numeric option and a verification set are data: a
hostile one is refused (exit 3, one line) in seconds with bounded memory, never a hang."""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys

import pytest
import torch
from cli_helpers import error_line, run
from PIL import Image

from foadx.data.verification import MAX_PAIR_PIXELS, PairSet, read_verification_bin
from foadx.errors import DataError, WeightsError
from foadx.models.weights_map import check_pattern, rename_keys

# --- kind 11: --weights-map cannot hang ---


@pytest.mark.parametrize("pattern", ["(a+)+$", "(a*)*b", "(a|aa)+$", "(\\w+\\.)*x", "(.)\\1"])
def test_backtracking_patterns_are_refused(pattern):
    with pytest.raises(WeightsError):
        check_pattern(pattern)


def test_plain_renames_still_work():
    rules = [(r"^module\.", ""), (r"(\d+)\.conv", r"block\1.conv")]
    assert rename_keys(["module.3.conv.weight", "fc.bias"], rules) == ["block3.conv.weight", "fc.bias"]


def test_polynomial_pattern_is_stopped_by_the_time_limit():
    # no nesting, but O(n^10) backtracking on a 3000-character key: only the time limit stops it
    with pytest.raises(WeightsError, match="took more than"):
        rename_keys(["a" * 3000 + "!"], [("a*" * 10 + "$", "x")])


def _inspect_with_map(tmp_path, pattern: str) -> subprocess.CompletedProcess:
    torch.save({"a" * 3000 + "!": torch.zeros(1)}, tmp_path / "w.pt")
    (tmp_path / "map.json").write_text(json.dumps({pattern: "x"}))
    command = [sys.executable, "-m", "foadx_cli", "inspect", "resnet56_cifar", "--weights", str(tmp_path / "w.pt"),
               "--weights-map", str(tmp_path / "map.json")]
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("pattern", ["(a+)+$", "a*a*a*a*a*a*a*a*a*a*$"])
def test_catastrophic_weights_map_ends_in_seconds_with_exit_3(tmp_path, pattern):
    result = _inspect_with_map(tmp_path, pattern)  # before: 5 minutes and more
    lines = [line for line in result.stderr.splitlines() if line.startswith("foadx: error:")]
    assert result.returncode == 3 and len(lines) == 1, result.stderr
    assert "regex" in lines[0] or "took more than" in lines[0]


def test_weights_map_must_be_a_regular_bounded_file(tmp_path):
    os.mkfifo(tmp_path / "map.json")
    torch.save({"x": torch.zeros(1)}, tmp_path / "w.pt")
    result = run("inspect", "resnet56_cifar", "--weights", tmp_path / "w.pt", "--weights-map", tmp_path / "map.json")
    assert result.exit_code == 3 and "not a regular file" in error_line(result)


# --- kind 12: numeric options are range-checked before any work ---


@pytest.mark.parametrize("args, flag", [
    (("bench", "resnet56_cifar", "--threads", "100000"), "--threads"),
    (("bench", "resnet56_cifar", "--threads", "0"), "--threads"),
    (("bench", "resnet56_cifar", "--duration-s", "inf"), "--duration-s"),
    (("bench", "resnet56_cifar", "--duration-s", "1e12"), "--duration-s"),
    (("bench", "resnet56_cifar", "--warmup-ms", "nan"), "--warmup-ms"),
    (("bench", "resnet56_cifar", "--rounds", "0"), "--rounds"),
    (("bench", "resnet56_cifar", "--min-iterations", "1000000000"), "--min-iterations"),
    (("prune", "resnet56_cifar", "--data", "demo", "--ratio", "0.3", "--images", "0", "--out", "o"), "--images"),
    (("prune", "resnet56_cifar", "--data", "demo", "--ratio", "0.3", "--batch-size", "-4", "--out", "o"),
     "--batch-size"),
    (("finetune", "resnet56_cifar", "--data", "demo", "--out", "o", "--epochs", "10000000"), "--epochs"),
    (("eval", "resnet56_cifar", "--data", "demo", "--batch-size", "0"), "--batch-size"),
    (("eval", "resnet56_cifar", "--data", "demo", "--seed", "-1"), "--seed"),
])
def test_out_of_range_options_are_refused_naming_the_flag(tmp_path, args, flag):
    result = run(*[tmp_path / a if a == "o" else a for a in args])
    line = error_line(result)
    assert result.exit_code == 3 and line.startswith(f"foadx: error: {flag} must be"), line
    assert not (tmp_path / "o").exists()  # refused before any work


def test_session_options_bound_threads():
    from foadx.errors import BadInputError
    from foadx.runtime.base import SessionOptions, max_threads

    assert SessionOptions(threads=max_threads()).threads == max_threads()
    with pytest.raises(BadInputError) as refused:
        SessionOptions(threads=max_threads() + 1)
    assert refused.value.parameters == ("threads",)


# --- kind 13: verification sets ---


def _png(width: int, height: int, seed: int, mode: str = "1") -> bytes:
    image = Image.new(mode, (width, height))
    image.putpixel((seed % width, 0), 1)
    stream = io.BytesIO()
    image.save(stream, "PNG")
    return stream.getvalue()


def test_an_empty_bin_is_refused(tmp_path):
    (tmp_path / "lfw.bin").write_bytes(b"")
    result = run("eval", "mobilefacenet", "--data", tmp_path / "lfw.bin")
    assert result.exit_code == 3 and "is empty" in error_line(result)


def test_a_bin_without_pairs_is_refused(tmp_path):
    (tmp_path / "lfw.bin").write_bytes(pickle.dumps(([], []), protocol=2))
    result = run("eval", "mobilefacenet", "--data", tmp_path / "lfw.bin")  # before: exit 1 (concatenate)
    assert result.exit_code == 3 and "no pairs" in error_line(result)


def test_huge_declared_images_are_refused_from_the_header(tmp_path):
    # 8 distinct 9000x9000 1-bit PNGs: about 80 KB on disk, 1.9 GB decoded (before: 3.9 GB peak)
    images = [_png(9000, 9000, seed) for seed in range(8)]
    (tmp_path / "lfw.bin").write_bytes(pickle.dumps((images, [True, False, True, False]), protocol=2))
    assert (tmp_path / "lfw.bin").stat().st_size < 200_000
    with pytest.raises(DataError, match="image 0 declares 9000x9000"):
        read_verification_bin(tmp_path / "lfw.bin")
    result = run("eval", "mobilefacenet", "--data", tmp_path / "lfw.bin")
    assert result.exit_code == 3 and "declares 9000x9000" in error_line(result)


def test_pair_images_are_decoded_lazily(tmp_path):
    small = [_png(112, 112, seed, "RGB") for seed in range(4)]
    pairs = PairSet(small, [True, False], "test")
    view = pairs.decoded()
    assert len(view) == 4 and view[3].shape == (112, 112, 3)
    assert len(view[1:3]) == 2 and [image.shape for image in view[1:3]] == [(112, 112, 3)] * 2
    big = PairSet([_png(2048, 1024, 0), small[0]], [True], "test")  # only decoding the big one refuses
    assert big.decoded()[1].shape == (112, 112, 3)
    with pytest.raises(DataError, match=f"{MAX_PAIR_PIXELS:,}"):
        big.decoded()[0]


def test_a_classifier_is_not_scored_on_face_pairs(tmp_path):
    images = [_png(112, 112, seed, "RGB") for seed in range(40)]
    (tmp_path / "lfw.bin").write_bytes(pickle.dumps((images, [i % 2 == 0 for i in range(20)]), protocol=2))
    result = run("eval", "resnet56_cifar", "--data", tmp_path / "lfw.bin")  # before: "accuracy 0.5000", exit 0
    line = error_line(result)
    assert result.exit_code == 3 and "classifier" in line and "face" in line
    for split in ("train", "val"):  # class folders: classification data, no task given
        for label in ("a", "b"):
            (tmp_path / "classes" / split / label).mkdir(parents=True)
            (tmp_path / "classes" / split / label / "0.png").write_bytes(_png(32, 32, 0, "RGB"))
    face = run("eval", "mobilefacenet", "--data", tmp_path / "classes")
    assert face.exit_code == 3 and "face embeddings" in error_line(face)
    # an explicit task is the user's choice where the data serves both (a 10-d embedding read as 10 logits)
    assert run("eval", "mobilefacenet", "--input-size", "32", "--model-arg", "embedding_size=10", "--data", "demo",
               "--task", "classify").exit_code == 0
