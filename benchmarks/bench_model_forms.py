"""One network, every form a user may hold it in: the whole prune -> export (verified) -> bench
path for torchvision's ResNet-18 at 64x64 given as

- a torchvision spec (``torchvision:resnet18``),
- a Python module function (``torchvision.models:resnet18``),
- a file factory (``path/file.py:build``; artifacts of code factories reload with ``--trust-code``),
- an ONNX file of the same weights (legacy exporter, opset 13, dynamic batch: how most
  ONNX-only models are written).

Each form runs the same three commands in a fresh process (``--ratio 0.3``, 64 demo calibration
images, FOAD); wall seconds per command and the pruned ONNX file's latency ratio against the
unpruned file (``foadx bench``, ort-cpu, batch 1, interleaved). The table says what each form
costs.

    .venv/bin/python benchmarks/bench_model_forms.py
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

from processes import FOADX, ROOT  # benchmarks/processes.py, beside this script
FACTORY = '''
import torchvision


def build():
    return torchvision.models.resnet18(num_classes=10)
'''


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()[-400:]}")
    return time.perf_counter() - started


def write_onnx(path: Path) -> None:
    """The network ``foadx prune torchvision:resnet18`` builds (seed 0), exported as most ONNX-only models are."""
    import torch

    import foadx

    torch.manual_seed(0)
    network = foadx.build_model("torchvision:resnet18", (64, 64), num_classes=10).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(network, torch.zeros(1, 3, 64, 64), str(path), input_names=["input"], opset_version=13,
                          dynamo=False, dynamic_axes={"input": {0: "batch"}})


def run_form(label: str, model: list[str], scratch: Path) -> dict[str, object]:
    out = scratch / label.replace(" ", "-")
    prune = timed([*FOADX, "prune", *model, "--data", "demo", "--images", "64", "--ratio", "0.3", "--out", str(out),
                   "--force", "--quiet"])
    trust = ["--trust-code"] if label in ("file factory", "Python module") else []
    export = timed([*FOADX, "export", str(out), *trust, "--out", str(out) + ".onnx", "--quiet"])
    unpruned = scratch / f"{out.name}-unpruned.onnx"
    if not unpruned.exists():
        timed([*FOADX, "export", *model, "--out", str(unpruned), "--quiet"] if "ONNX" not in label
              else ["cp", model[0], str(unpruned)])
    report = scratch / f"{out.name}-latency.json"
    timed([*FOADX, "bench", str(unpruned), str(out) + ".onnx", "--duration-s", "2", "--report", str(report), "--quiet"])
    rows = json.loads(report.read_text())["results"]
    return {"form": label, "prune_s": prune, "export_s": export, "speedup": rows[1].get("speedup_vs_first")}


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        (scratch / "user_net.py").write_text(FACTORY)
        write_onnx(scratch / "resnet18.onnx")
        forms = {"torchvision spec": ["torchvision:resnet18", "--input-size", "64", "--model-arg", "num_classes=10"],
                 "Python module": ["torchvision.models:resnet18", "--input-size", "64", "--model-arg", "num_classes=10"],
                 "file factory": [f"{scratch / 'user_net.py'}:build", "--input-size", "64"],
                 "ONNX file": [str(scratch / "resnet18.onnx")]}
        rows = [run_form(label, model, scratch) for label, model in forms.items()]
    print("| form | prune s | export + verify s | pruned/unpruned speedup (ort-cpu, b1) |")
    print("|---|---:|---:|---:|")
    for row in rows:
        speedup = f"{row['speedup']:.2f}x" if isinstance(row["speedup"], (int, float)) else "n/a"
        print(f"| {row['form']} | {row['prune_s']:.1f} | {row['export_s']:.1f} | {speedup} |")


if __name__ == "__main__":
    main()
