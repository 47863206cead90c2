"""Issue 23, kinds 11-13: a weights map, a numeric option and a verification set are data: a
hostile one is refused (exit 3, one line) in seconds with bounded memory, never a hang. So is an
ONNX file whose input or intermediate tensors are absurd, whose input is not float32, or whose
graph does not run on its own input."""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from cli_helpers import error_line, run
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from foadx.data.verification import MAX_PAIR_PIXELS, PairSet, read_verification_bin
from foadx.errors import BadInputError, DataError, WeightsError
from foadx.models.onnx_graph import refuse_oversized_tensors
from foadx.models.onnx_import import onnx_contract
from foadx.models.weights_map import check_pattern, rename_keys
from foadx.untrusted import MAX_CHANNELS, MAX_SIDE

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


# --- ONNX files: what the graph declares never sizes an allocation unchecked ---


def _onnx_file(path, nodes: list, inputs: list, initializers: list) -> str:
    """A checker-valid opset-13 graph of ``nodes`` whose output is ``y`` (4-D), saved to ``path``."""
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "c", "h", "w"])
    graph = helper.make_graph(nodes, "hostile", inputs, [output], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, str(path))
    return str(path)


def _conv_file(path, input_shape: list, input_type: int = TensorProto.FLOAT, cast: bool = False, **conv) -> str:
    """``data`` (cast to float when ``cast``) through one 3 -> 4 channel Conv with ``conv`` attributes."""
    kernel = conv.pop("kernel", 1)
    weight = numpy_helper.from_array(np.ones((4, 3, kernel, kernel), np.float32), "w")
    nodes = [helper.make_node("Cast", ["data"], ["image"], to=TensorProto.FLOAT)] if cast else []
    nodes.append(helper.make_node("Conv", ["image" if cast else "data", "w"], ["y"], **conv))
    return _onnx_file(path, nodes, [helper.make_tensor_value_info("data", input_type, input_shape)], [weight])


def _constant_of_shape_file(path, shape: list) -> str:
    """A 32x32 Conv whose output is scaled by the sum of a ``ConstantOfShape(shape)`` of ones:
    a few hundred bytes that describe a tensor of ``prod(shape)`` floats."""
    nodes = [helper.make_node("Conv", ["data", "w"], ["c"]),
             helper.make_node("ConstantOfShape", ["shape"], ["ones"],
                              value=numpy_helper.from_array(np.ones(1, np.float32), "one")),
             helper.make_node("ReduceSum", ["ones"], ["total"], keepdims=0),
             helper.make_node("Mul", ["c", "total"], ["y"])]
    initializers = [numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "w"),
                    numpy_helper.from_array(np.array(shape, np.int64), "shape")]
    return _onnx_file(path, nodes, [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 32, 32])],
                      initializers)


@pytest.mark.parametrize("command", [("bench",), ("eval", "--data", "demo"),
                                     ("prune", "--data", "demo", "--images", "8", "--ratio", "0.3", "--out", "o"),
                                     ("verify", "--against", "FILE", "--data", "none"), ("profile", "--out", "l.json")])
def test_an_absurd_onnx_input_is_refused_by_every_command(tmp_path, command):
    path = _conv_file(tmp_path / "huge.onnx", [1, 3, 2**40, 2**40])  # before: exit 1, unexpected ValueError
    args = [path if arg == "FILE" else tmp_path / arg if arg in ("o", "l.json") else arg for arg in command[1:]]
    result = run(command[0], path, *args)
    line = error_line(result)
    assert result.exit_code == 3 and "'data' (1x3x1099511627776x1099511627776, float)" in line, line
    assert "foadx refuses any tensor over 1 GiB" in line


@pytest.mark.parametrize("shape, refused", [([1, 1, 1, 20_000], "1x1x20000"), ([1, 70_000, 1, 1], "70000x1x1")])
def test_an_onnx_input_beyond_the_side_or_channel_bound_is_refused(tmp_path, shape, refused):
    model = onnx.load(_conv_file(tmp_path / "long.onnx", shape))  # small tensors, beyond any image model
    with pytest.raises(BadInputError, match=f"its input is {refused} .*at most {MAX_CHANNELS} channels and "
                                            f"{MAX_SIDE} pixels a side"):
        onnx_contract(model, "long.onnx")


def test_an_onnx_file_with_an_integer_input_is_refused(tmp_path):
    path = _conv_file(tmp_path / "int64.onnx", [1, 3, 32, 32], TensorProto.INT64, cast=True)
    result = run("bench", path)  # before: exit 1, onnxruntime's InvalidArgument
    assert result.exit_code == 3 and "its input 'data' holds int64; foadx feeds float32 images" in error_line(result)


def test_an_onnx_graph_that_does_not_run_on_its_input_is_one_line(tmp_path):
    path = _conv_file(tmp_path / "dilated.onnx", [1, 3, 32, 32], kernel=3, dilations=[100_000, 100_000])
    result = run("prune", path, "--data", "demo", "--images", "8", "--ratio", "0.3", "--out", tmp_path / "o")
    line = error_line(result)  # before: exit 1 after ShapeProp's own 29-line traceback
    assert result.exit_code == 3 and "the graph does not run on a 1x3x32x32 input: Calculated padded input" in line


def test_an_onnx_tensor_over_the_cap_is_refused_before_any_allocation(tmp_path):
    path = _constant_of_shape_file(tmp_path / "bomb.onnx", [500, 1000, 1000])  # 2 GB of floats
    assert os.path.getsize(path) < 1_000
    # the peak RSS of this process's own memory (VmHWM resets at exec; ru_maxrss keeps the forking parent's)
    code = ("import sys\nfrom foadx_cli.app import main\ntry:\n    sys.exit(main())\nfinally:\n"
            "    print(next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM')),"
            " file=sys.stderr)\n")
    result = subprocess.run([sys.executable, "-c", code, "prune", path, "--data", "demo", "--images", "8",
                             "--ratio", "0.3", "--out", str(tmp_path / "o")], check=False, capture_output=True,
                            text=True, timeout=300)
    *lines, peak_kib = result.stderr.splitlines()
    expected = (f"foadx: error: {path}: the tensor 'ones' (500x1000x1000, float) would hold 1.86 GiB at batch 1; "
                "foadx refuses any tensor over 1 GiB")
    assert result.returncode == 3 and lines == [expected]
    assert int(peak_kib) < 1_500_000  # before: 2.6 GB, a 2 GB tensor folded


@pytest.mark.parametrize("shape, refused", [([256, 1024, 1024], False), ([257, 1024, 1024], True)])
def test_the_tensor_cap_is_exactly_1_gib(tmp_path, shape, refused):
    model = onnx.load(_constant_of_shape_file(tmp_path / "edge.onnx", shape))
    if refused:
        with pytest.raises(BadInputError, match="'ones' .* would hold 1 GiB at batch 1"):
            refuse_oversized_tensors(model, "edge.onnx")
    else:
        refuse_oversized_tensors(model, "edge.onnx")  # exactly MAX_TENSOR_BYTES


def test_a_dynamic_batch_is_sized_at_batch_1(tmp_path):
    model = onnx.load(_conv_file(tmp_path / "wide.onnx", ["batch", 3, 16_384, 16_384]))
    with pytest.raises(BadInputError, match=r"'data' \(1x3x16384x16384, float\) would hold 3 GiB at batch 1"):
        refuse_oversized_tensors(model, "wide.onnx")


def test_external_weights_beyond_2_gib_are_refused_before_they_are_read(tmp_path):
    """A 200-byte file whose weight lives in a 3 GB sparse file beside it (no disk used): it was
    read in whole, 6.4 GB at its peak; the sizes are added up first now, and a real external-data
    file still loads."""
    from onnx.external_data_helper import set_external_data

    path = _conv_file(tmp_path / "huge.onnx", [1, 3, 32, 32])
    model = onnx.load(path)
    set_external_data(model.graph.initializer[0], "weights.bin")
    model.graph.initializer[0].ClearField("raw_data")
    model.graph.initializer[0].data_location = TensorProto.EXTERNAL
    onnx.save(model, path)
    with open(tmp_path / "weights.bin", "wb") as sparse:
        sparse.truncate(3_000_000_000)
    result = run("bench", path)
    assert result.exit_code == 3 and "names 3,000,000,000 bytes of external weights" in error_line(result)
    small = _conv_file(tmp_path / "small.onnx", [1, 3, 32, 32])
    onnx.save(onnx.load(small), str(tmp_path / "ext.onnx"), save_as_external_data=True, size_threshold=0,
              location="ext.bin")
    assert run("bench", tmp_path / "ext.onnx", "--duration-s", "0.1").exit_code == 0


def _head_and_tail(tmp_path, name: str, middle: list, initializers: list) -> str:
    """A 32x32 Conv -> pool -> flatten head whose output is offset by 0 x the sum of ``middle``'s
    tensor ``z``: the graph computes z whatever its size."""
    nodes = [helper.make_node("Conv", ["data", "w"], ["c"]), helper.make_node("GlobalAveragePool", ["c"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]), *middle,
             helper.make_node("ReduceSum", ["z"], ["s"], keepdims=0), helper.make_node("Mul", ["s", "zero"], ["s0"]),
             helper.make_node("Add", ["f", "s0"], ["y"])]
    weights = [numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "w"),
               numpy_helper.from_array(np.array(0, np.float32), "zero"), *initializers]
    return _onnx_file(tmp_path / name, nodes, [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 32, 32])],
                      weights)


def test_what_cannot_be_sized_before_it_runs_is_refused(tmp_path):
    """Shape inference cannot size a Loop's result or a ConstantOfShape sized by the image's own
    values: they were let through (9.9 GB and 2.6 GB from 1.5 KB files); a float Resize scale was
    dropped from the inference and is kept now."""
    body = helper.make_graph([helper.make_node("Identity", ["go"], ["going"]), helper.make_node("Concat", ["a", "a"], ["b"], axis=0)],
                             "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                                      helper.make_tensor_value_info("go", TensorProto.BOOL, []),
                                      helper.make_tensor_value_info("a", TensorProto.FLOAT, ["d"])],
                             [helper.make_tensor_value_info("going", TensorProto.BOOL, []),
                              helper.make_tensor_value_info("b", TensorProto.FLOAT, ["d"])])
    loop = _head_and_tail(tmp_path, "loop.onnx", [helper.make_node("Loop", ["trips", "true", "seed"], ["z"], body=body)],
                          [numpy_helper.from_array(np.array(29, np.int64), "trips"),
                           numpy_helper.from_array(np.array(True), "true"), numpy_helper.from_array(np.ones(1, np.float32), "seed")])
    sized_by_values = _head_and_tail(tmp_path, "values.onnx", [
        helper.make_node("ReduceMax", ["data"], ["m"], keepdims=0), helper.make_node("Cast", ["m"], ["n"], to=TensorProto.INT64),
        helper.make_node("Reshape", ["n", "one"], ["shape"]),
        helper.make_node("ConstantOfShape", ["shape"], ["z"], value=numpy_helper.from_array(np.ones(1, np.float32)))],
        [numpy_helper.from_array(np.array([1], np.int64), "one")])
    resized = _head_and_tail(tmp_path, "resize.onnx", [helper.make_node("Resize", ["data", "", "scales"], ["z"], mode="nearest")],
                             [numpy_helper.from_array(np.array([1, 1, 400, 400], np.float32), "scales")])
    for path, says in ((loop, "its graph holds Loop control flow"),
                       (sized_by_values, "the size of the output of ConstantOfShape depends on values known only when it runs"),
                       (resized, "(1x3x12800x12800, float) would hold 1.83 GiB")):
        result = run("bench", path)
        assert result.exit_code == 3 and says in error_line(result), (path, result.output)
