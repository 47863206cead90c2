"""MobileFaceNet full vs FOAD-pruned at the paper's budget, on onnxruntime CPU (and CUDA torch).

    .venv/bin/python benchmarks/bench_export.py [--batch 1] [--duration-s 4] [--round-to 1,8,16]
    .venv/bin/python benchmarks/bench_export.py --backend torch-cuda-graph --precision fp16 --batch 256

ORT rows: each network exported four ways (PReLU kept, rewritten elementwise, rewritten as
depthwise 1x1 convolutions, and foadx's default ``auto``: depthwise where widths are multiples
of 8), all files measured interleaved in one run by ``foadx bench``'s harness. FOAD prunes 63.6% of MACs (the paper's Table 4 budget) with BN re-estimated on the
embedded digits; ``--round-to`` widths trade a few MACs for SIMD-friendly channel counts.
Prints the median over rounds and speedups against the full network exported the same way and
against the full network's best export. Torch backends measure the modules themselves.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

import foadx
from foadx.bench import bench_model, parse_batches, run_bench
from foadx.data import calibration_images
from foadx.export import export_onnx
from foadx.pruning.batchnorm import recalibrate_batchnorm
from foadx.pruning.cost import count_cost
from foadx.runtime import SessionOptions, TimingSettings, get_backend

FORMS = {"prelu": {"prelu_rewrite": False}, "elementwise": {"prelu_form": "elementwise"},
         "depthwise": {"prelu_form": "depthwise"}, "auto": {"prelu_form": "auto"}}


def networks(round_tos: list[int]) -> dict[str, torch.nn.Module]:
    images = calibration_images("demo", 128, (112, 112), (0.5,) * 3, (0.5,) * 3, 32, 0)
    torch.manual_seed(0)
    full = foadx.build_model("mobilefacenet")
    recalibrate_batchnorm(full, images, torch.device("cpu"))
    found = {"full": full.eval()}
    for round_to in round_tos:
        result = foadx.prune(full, images, flops_target=0.636, round_to=round_to, recalibrate_bn=True)
        found[f"foad r{round_to}"] = result.model.eval()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="ort-cpu")
    parser.add_argument("--batch", default="1")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--duration-s", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--round-to", default="1,8,16")
    parser.add_argument("--out", type=Path, default=None, help="also write the foadx latency report here")
    args = parser.parse_args()

    models = networks(parse_batches(args.round_to))
    example = torch.zeros(1, 3, 112, 112)
    macs = {name: count_cost(model, example).macs for name, model in models.items()}
    with tempfile.TemporaryDirectory() as scratch:
        entries = []
        for name, model in models.items():
            if get_backend(args.backend).loads == "torch":
                entries.append(bench_model(name, model))
                continue
            for form, options in FORMS.items():
                path = Path(scratch) / f"{name.replace(' ', '_')}_{form}.onnx"
                export_onnx(model, path, verify=False, **options)
                entries.append(bench_model(f"{name} | {form}", path))
        settings = TimingSettings(warmup_ms=500, duration_s=args.duration_s, min_iterations=20, rounds=args.rounds)
        options = SessionOptions(precision=args.precision, threads=args.threads)
        report = run_bench(entries, [args.backend], parse_batches(args.batch), options=options, settings=settings)
    if args.out:
        from foadx.atomic import write_json

        write_json(args.out, report)

    environment = report["environment"]
    print(f"{args.backend} {args.precision}, {environment['cpu']} x{environment['cpu_count']}"
          + (f", {environment['gpu']}" if environment["gpu"] else "")
          + f"; torch {environment['libraries']['torch']}, onnxruntime {environment['libraries']['onnxruntime']}")
    by_label = {(r["model"], r["batch"]): r for r in report["results"]}
    for batch in parse_batches(args.batch):
        full_rows = {label.split(" | ")[-1]: r["median_of_rounds_ms"] for (label, b), r in by_label.items()
                     if b == batch and label.startswith("full")}
        best_full = min(full_rows.values())
        print(f"\nbatch {batch}")
        print(f"{'network':<12}{'MACs':>10}{'export':>13}{'median ms':>11}{'images/s':>10}{'vs full same':>14}{'vs full best':>14}")
        for (label, b), row in by_label.items():
            if b != batch:
                continue
            name, _, form = label.partition(" | ")
            same = full_rows.get(form or "full", best_full) / row["median_of_rounds_ms"]
            print(f"{name:<12}{macs[name] / 1e6:>9.1f}M{form or '-':>13}{row['median_of_rounds_ms']:>11.3f}"
                  f"{row['throughput_ips']:>10.1f}{same:>13.2f}x{best_full / row['median_of_rounds_ms']:>13.2f}x")


if __name__ == "__main__":
    main()
