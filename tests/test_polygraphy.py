"""Peer-tool cross-check: Polygraphy's `run --onnxrt` comparison agrees with `foadx verify`.

Polygraphy runs the exported file in its own onnxruntime runner and compares it with the torch
outputs foadx compares against (saved in Polygraphy's formats); both must reach the same verdict
at the same tolerances and report the same worst errors.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from foadx.export import export_onnx, verify_onnx

polygraphy = pytest.importorskip("polygraphy")
from polygraphy.comparator import IterationResult, RunResults  # noqa: E402
from polygraphy.json import save_json  # noqa: E402


def polygraphy_cli() -> list[str]:
    found = shutil.which("polygraphy", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "polygraphy"]


def polygraphy_compare(onnx_path: Path, batch: np.ndarray, reference: np.ndarray, atol: float, rtol: float, folder: Path):
    save_json([{"input": batch}], folder / "inputs.json")
    results = RunResults()
    results.append(("torch", [IterationResult({"embedding": reference}, runner_name="torch")]))
    results.save(str(folder / "torch.json"))
    completed = subprocess.run(
        [*polygraphy_cli(), "run", str(onnx_path), "--onnxrt", "--load-inputs", str(folder / "inputs.json"),
         "--load-outputs", str(folder / "torch.json"), "--atol", repr(atol), "--rtol", repr(rtol)],
        capture_output=True, text=True, timeout=300,
    )
    match = re.search(r"Minimum Required Tolerance: elemwise error \| \[abs=([0-9.e+-]+)\] OR \[rel=([0-9.e+-]+)\]",
                      completed.stdout + completed.stderr)
    return completed.returncode == 0, (float(match.group(1)), float(match.group(2))) if match else None


@pytest.fixture(scope="module")
def exported(pruned_mobilefacenet, tmp_path_factory):
    path = tmp_path_factory.mktemp("poly") / "m.onnx"
    export_onnx(pruned_mobilefacenet, path, verify=False)
    return path


def test_polygraphy_agrees_with_foadx_verify(exported, pruned_mobilefacenet, digits_112, tmp_path):
    batch = digits_112[:4].numpy()
    with torch.inference_mode():
        reference = pruned_mobilefacenet(torch.from_numpy(batch)).numpy()
    loose = verify_onnx(exported, pruned_mobilefacenet, images=batch, batch_sizes=(4,))
    image_case = next(case for case in loose.cases if case.inputs == "images").outputs[0]
    passed, minimum = polygraphy_compare(exported, batch, reference, 1e-3, 1e-3, tmp_path)
    assert passed and image_case.passed
    # Polygraphy's own worst errors equal foadx's on the same images (both: |onnx - torch| / |torch|).
    assert minimum == pytest.approx((image_case.max_abs, image_case.max_rel), rel=1e-3)

    # Tolerances below what the data needs: both fail.
    tight_atol = image_case.smallest_atol / 2
    tight = verify_onnx(exported, pruned_mobilefacenet, images=batch, batch_sizes=(4,), atol=tight_atol, rtol=1e-3)
    tight_case = next(case for case in tight.cases if case.inputs == "images")
    assert not tight_case.passed
    assert polygraphy_compare(exported, batch, reference, tight_atol, 1e-3, tmp_path)[0] is False


def test_polygraphy_also_catches_a_planted_mismatch(exported, pruned_mobilefacenet, digits_112, tmp_path):
    tampered = copy.deepcopy(pruned_mobilefacenet)
    with torch.no_grad():
        tampered.blocks[5].depthwise.conv.weight[2] *= -1.0
    batch = digits_112[:4].numpy()
    with torch.inference_mode():
        reference = tampered(torch.from_numpy(batch)).numpy()
    assert not verify_onnx(exported, tampered, images=batch, batch_sizes=(4,)).passed
    assert polygraphy_compare(exported, batch, reference, 1e-3, 1e-3, tmp_path)[0] is False
