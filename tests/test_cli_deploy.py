"""The export / verify / bench / report commands end to end, with docs/design.md's exit codes."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

import foadx
from foadx_cli.app import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(arg) for arg in args])


def error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.startswith("foadx: error: ")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


@pytest.fixture(scope="module")
def artifact(tmp_path_factory, digits_112):
    torch.manual_seed(0)
    model = foadx.build_model("mobilefacenet")
    result = foadx.prune(model, digits_112, flops_target=0.636, round_to=8, recalibrate_bn=True)
    return result.save(tmp_path_factory.mktemp("cli") / "pruned")


@pytest.fixture(scope="module")
def exported(artifact, tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    result = run("export", artifact, "--out", folder / "m.onnx", "--report", folder / "parity.json", "--json")
    assert result.exit_code == 0, result.output
    return folder, json.loads(result.output)


def test_export_writes_a_verified_file_and_its_parity_report(exported):
    folder, summary = exported
    assert summary["opset"] == 18 and summary["exporter"] == "dynamo" and summary["prelu_rewritten"] == 33
    parity = json.loads((folder / "parity.json").read_text())
    assert parity["passed"] and {case["inputs"] for case in parity["cases"]} == {"random", "images"}
    assert summary["file_bytes"] == (folder / "m.onnx").stat().st_size


def test_verify_passes_and_writes_json(exported, artifact, tmp_path):
    folder, _ = exported
    result = run("verify", folder / "m.onnx", "--against", artifact, "--report", tmp_path / "p.json", "--batch", "2,3")
    assert result.exit_code == 0, result.output
    assert [case["batch"] for case in json.loads((tmp_path / "p.json").read_text())["cases"]] == [2, 3, 2, 3]
    assert "parity passed" in result.output


def test_verify_against_a_perturbed_model_exits_4(exported, artifact, tmp_path):
    folder, _ = exported
    state = torch.load(artifact / "weights.pt", weights_only=True)
    state["blocks.0.expand.conv.weight"][0] += 1.0
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    (tampered / "plan.json").write_text((artifact / "plan.json").read_text())
    torch.save(state, tampered / "weights.pt")
    result = run("verify", folder / "m.onnx", "--against", tampered, "--report", tmp_path / "p.json")
    assert result.exit_code == 4
    assert "parity FAILED" in error_line(result)
    assert json.loads((tmp_path / "p.json").read_text())["passed"] is False  # the report is kept


def test_bad_input_exits_3(exported, artifact, tmp_path):
    folder, _ = exported
    (tmp_path / "broken.onnx").write_bytes((folder / "m.onnx").read_bytes()[:5000])
    cases = [
        (("verify", tmp_path / "broken.onnx", "--against", artifact), "not a valid ONNX model"),
        (("verify", tmp_path / "absent.onnx", "--against", artifact), "not found"),
        (("export", artifact, "--out", folder / "m.onnx" / "m.onnx"), "cannot create the folder"),
        (("export", "nosuchmodel", "--out", tmp_path / "m.onnx"), "unknown model"),
        (("bench", artifact, "--backend", "tensorrt-xl"), "unknown backend"),
        (("bench", artifact, "--batch", "0"), "batch sizes"),
        (("verify", folder / "m.onnx", "--against", "resnet56_cifar", "--data", "none"), "not the same model"),
        (("report", tmp_path / "broken.onnx"), "cannot read report"),
    ]
    for args, message in cases:
        result = run(*args)
        assert result.exit_code == 3, (args, result.output)
        assert message in error_line(result), (args, result.output)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
def test_cuda_backend_without_gpu_exits_6(artifact):
    result = run("bench", artifact, "--backend", "torch-cuda-graph")
    assert result.exit_code == 6 and "needs a CUDA GPU" in error_line(result)


def test_bench_report_markdown_and_regression_gate(exported, artifact, tmp_path):
    folder, _ = exported
    timing = ("--duration-s", "0.2", "--warmup-ms", "10", "--rounds", "2", "--min-iterations", "2")
    result = run("bench", "mobilefacenet", artifact, folder / "m.onnx", "--batch", "1", "--report", tmp_path / "r.json",
                 "--markdown", tmp_path / "r.md", "--quiet", *timing)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert [m["label"] for m in report["models"]] == ["mobilefacenet", str(artifact), str(folder / "m.onnx")]
    rendered = run("report", tmp_path / "r.json")
    assert rendered.exit_code == 0 and rendered.output == (tmp_path / "r.md").read_text()

    # The gate, on the ONNX file alone (no export to wait for): against its own row with a
    # generous allowance it passes...
    onnx = str(folder / "m.onnx")
    own = {**report, "models": [m for m in report["models"] if m["label"] == onnx],
           "results": [row for row in report["results"] if row["model"] == onnx]}
    (tmp_path / "own.json").write_text(json.dumps(own))
    gated = run("bench", onnx, "--batch", "1", "--baseline", tmp_path / "own.json", "--max-regression", "1000",
                "--json", *timing)
    assert gated.exit_code == 0, gated.output
    assert json.loads(gated.output)["gate"]["passed"] is True
    # ...and against a baseline ten times faster it exits 5.
    for row in own["results"]:
        row["median_of_rounds_ms"] /= 10
    (tmp_path / "fast.json").write_text(json.dumps(own))
    slower = run("bench", onnx, "--batch", "1", "--baseline", tmp_path / "fast.json", "--max-regression", "10",
                 "--quiet", *timing)
    assert slower.exit_code == 5
    assert "slower than the baseline" in error_line(slower)


def test_parity_report_renders_as_markdown(exported):
    folder, _ = exported
    result = run("report", folder / "parity.json")
    assert result.exit_code == 0
    assert "# foadx parity report" in result.output and "**passed**" in result.output
    assert "| random | 1 | embedding |" in result.output
