"""What pruning an ONNX file costs over pruning the same network from its model spec.

The whole ``foadx prune`` command (fresh process, 128 demo calibration images, ``--ratio 0.5``,
FOAD) on insightface's MobileFaceNet (``mbf``) twice: from the spec ``mbf`` and from an ONNX file
of the same network (seed 0, as the command builds the spec) written the way insightface's
export script writes one (legacy exporter, opset 13, dynamic batch). Runs interleaved, median
of ``--runs`` pairs, wall seconds; then the import alone (load, clean, onnx2torch, normalise) in
one process, median of ``--runs``. The goal (issue 24): the ONNX source adds at most 20%.

    .venv/bin/python benchmarks/bench_onnx_import.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

from processes import FOADX, wall  # benchmarks/processes.py, beside this script


def write_mbf_onnx(path: Path) -> None:
    """``mbf`` as ``foadx prune mbf`` builds it (seed 0), exported as insightface exports."""
    import torch

    import foadx

    torch.manual_seed(0)
    net = foadx.build_model("mbf").eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, torch.zeros(1, 3, 112, 112), str(path), input_names=["data"],
                          keep_initializers_as_inputs=False, opset_version=13, dynamo=False,
                          dynamic_axes={"data": {0: "batch"}})


def whole_command(onnx_file: Path, scratch: Path, runs: int) -> dict[str, list[float]]:
    job = ["--data", "demo", "--ratio", "0.5", "--force", "--quiet"]
    commands = {"mbf (spec)": [*FOADX, "prune", "mbf", *job, "--out", str(scratch / "spec")],
                "mbf.onnx (file)": [*FOADX, "prune", str(onnx_file), *job, "--out", str(scratch / "file")]}
    for command in commands.values():
        wall(command)  # warm the file cache
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, command in commands.items():
            times[name].append(wall(command))
    return times


def import_alone(onnx_file: Path, runs: int) -> list[float]:
    from foadx.models.onnx_import import import_onnx

    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        import_onnx(onnx_file)
        seconds.append(time.perf_counter() - started)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        onnx_file = scratch / "mbf.onnx"
        write_mbf_onnx(onnx_file)
        times = whole_command(onnx_file, scratch, runs)
        imports = import_alone(onnx_file, runs)
    base = statistics.median(times["mbf (spec)"])
    print(f"| foadx prune (fresh process, {runs} interleaved runs) | median s | min s | ratio to the spec |")
    print("|---|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.2f} | {min(values):.2f} | {statistics.median(values) / base:.2f}x |")
    print(f"\nimport alone (load, clean, onnx2torch, normalise): median {statistics.median(imports):.2f} s, "
          f"min {min(imports):.2f} s over {runs} runs")


if __name__ == "__main__":
    main()
