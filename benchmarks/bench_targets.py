"""MobileFaceNet, full and FOAD-pruned, on onnxruntime CPU and OpenVINO: fp32, bf16 (where the
CPU has it) and int8, each runtime on the file form foadx exports for it, all interleaved.

    .venv/bin/python benchmarks/bench_targets.py [--batch 1,8] [--duration-s 2]

Besides each target's own form, two cross rows show why the forms differ: onnxruntime on the
OpenVINO form (PReLU kept) and OpenVINO on the onnxruntime form (PReLU rewritten). int8 files
are made by ``foadx.export.quantize`` in each target's form, calibrated on the embedded digits;
the weights are random (BN statistics from the digits), so only latency is reported here, not
int8 accuracy (tests/test_int8.py and ``foadx export --precision int8`` check that). The last
column is the speedup over onnxruntime fp32 (its own form) for the same model and batch.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

import foadx
from foadx.bench import parse_batches
from foadx.data import calibration_images
from foadx.export import export_onnx
from foadx.export.quantize import Int8Options, quantize_int8
from foadx.pruning.batchnorm import recalibrate_batchnorm
from foadx.runtime import SessionOptions, TimingSettings, measure_interleaved, open_session, summarize

FACE = ((0.5,) * 3, (0.5,) * 3)


def networks() -> tuple[dict[str, torch.nn.Module], np.ndarray]:
    images = calibration_images("demo", 128, (112, 112), *FACE, 32, 0)
    torch.manual_seed(0)
    full = foadx.build_model("mobilefacenet")
    recalibrate_batchnorm(full, images, torch.device("cpu"))
    pruned = foadx.prune(full, images, flops_target=0.636, round_to=16, recalibrate_bn=True).model
    return {"full": full.eval(), "FOAD -63.6% MACs": pruned.eval()}, np.concatenate([b.numpy() for b in images])


def files(models: dict[str, torch.nn.Module], images: np.ndarray, scratch: Path) -> dict[tuple[str, str], Path]:
    """(model, form) -> file; forms: each target's fp32 export and its int8 copy."""
    made = {}
    for name, model in models.items():
        stem = scratch / name.split()[0]
        for target in ("ort-cpu", "openvino"):
            fp32 = export_onnx(model, f"{stem}.{target}.onnx", target=target, verify=False).path
            made[(name, f"{target} form")] = fp32
            made[(name, f"{target} int8 form")] = Path(quantize_int8(
                fp32, f"{stem}.{target}.int8.onnx", images, target=target, options=Int8Options(min_cosine=-1.0))["path"])
    return made


def configurations(have_bf16: bool) -> list[tuple[str, str, str]]:
    """(runtime, precision, form) rows."""
    rows = [("ort-cpu", "fp32", "ort-cpu form"), ("ort-cpu", "fp32", "openvino form"),
            ("ort-cpu", "int8", "ort-cpu int8 form"),
            ("openvino", "fp32", "openvino form"), ("openvino", "fp32", "ort-cpu form"),
            ("openvino", "int8", "openvino int8 form")]
    return rows + ([("openvino", "bf16", "openvino form")] if have_bf16 else [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", default="1,8")
    parser.add_argument("--duration-s", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    import openvino

    have_bf16 = "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    models, images = networks()
    batches = parse_batches(args.batch)
    with tempfile.TemporaryDirectory() as scratch:
        made = files(models, images, Path(scratch))
        steps, ran = {}, {}
        for name in models:
            for runtime, precision, form in configurations(have_bf16):
                # onnxruntime runs a file in its own precision: an int8 file is opened as it is
                opened = "fp32" if runtime == "ort-cpu" else precision
                session = open_session(runtime, made[(name, form)], SessionOptions(precision=opened))
                ran[(name, runtime, precision, form)] = session.settings().get(
                    "inference_precision", "Q/DQ file" if precision == "int8" else precision)
                for batch in batches:
                    steps[(name, runtime, precision, form, batch)] = session.timed_step(batch)
        settings = TimingSettings(duration_s=args.duration_s, rounds=args.rounds)
        medians = {key: summarize(samples, key[-1])["median_of_rounds_ms"]
                   for key, samples in measure_interleaved(steps, settings).items()}
    print(f"interleaved, {args.rounds} rounds, ~{args.duration_s:g} s per row; bf16: "
          f"{'measured' if have_bf16 else 'this CPU has none (OpenVINO would silently run fp32)'}\n")
    print("| model | runtime | precision (ran as) | file form | batch | median ms | images/s | vs ort-cpu fp32 |")
    print("|---|---|---|---|---|---|---|---|")
    for (name, runtime, precision, form, batch), ms in medians.items():
        baseline = medians[(name, "ort-cpu", "fp32", "ort-cpu form", batch)]
        print(f"| {name} | {runtime} | {precision} ({ran[(name, runtime, precision, form)]}) | {form} | {batch} | "
              f"{ms:.2f} | {batch * 1000 / ms:.0f} | {baseline / ms:.2f}x |")


if __name__ == "__main__":
    main()
