"""How well a latency table predicts a whole network, per profiling mode: MobileFaceNet (112x112)
profiled on a backend in unit and network mode, then 5 random legal width settings pruned,
predicted from each table (through its savings curve) and measured as the median of interleaved
pairs beside the unpruned network right after that table was made; prints the profiling seconds,
the errors, the load average and the drift: how far the same settings measured before any
profiling moved by then (what no table made minutes earlier can predict).

    .venv/bin/python benchmarks/bench_latency.py [--backend ort-cpu] [--batch 8,1] [--modes unit,network]
    .venv/bin/python benchmarks/bench_latency.py --model vgg16_cifar --settings 0   (profiling seconds only)
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time

import torch

import foadx
from foadx.bench import parse_batches
from foadx.data import calibration_images
from foadx.latency import profile
from foadx.latency.api import _setting
from foadx.latency.measure import measure_pairs
from foadx.latency.plan import Planner, legal_widths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilefacenet")
    parser.add_argument("--backend", default="ort-cpu")
    parser.add_argument("--batch", default="8,1")
    parser.add_argument("--modes", default="unit,network")
    parser.add_argument("--settings", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = foadx.build_model(args.model).eval()
    chw = foadx.provenance_of(model).source.input_chw
    images = calibration_images("demo", 16, chw[1:], (0.5,) * 3, (0.5,) * 3, 16, 0)
    print("| batch | mode | profile s | setting | predicted ratio | measured ratio [min, max] | error | drift | load |")
    print("|---|---|---|---|---|---|---|---|---|")
    for batch in parse_batches(args.batch):
        _, analysis, units = _setting(model, batch, False, ())
        rng = random.Random(args.seed)
        settings = [{g.name: rng.choice(legal_widths(g, 16)) for g in analysis.chosen} for _ in range(args.settings)]
        pruned = [foadx.prune(model, images, criterion="random", widths=widths).model for widths in settings]
        before = _measure(model, pruned, args.backend, chw, batch, args.pairs)
        for mode in args.modes.split(","):
            start = time.perf_counter()
            table = profile(model, args.backend, batch=batch, mode=mode)
            seconds = time.perf_counter() - start
            measured = _measure(model, pruned, args.backend, chw, batch, args.pairs)
            planner = Planner(table, units, analysis.chosen, {g.name: {} for g in analysis.chosen})
            errors = []
            for number, (widths, ratios, earlier) in enumerate(zip(settings, measured, before), 1):
                predicted, ratio = planner.predict(widths) / table.network_ms, statistics.median(ratios)
                errors.append(predicted / ratio - 1)
                print(f"| {batch} | {mode} | {seconds:.0f} | {number} | {predicted:.3f} | {ratio:.3f} "
                      f"[{min(ratios):.3f}, {max(ratios):.3f}] | {errors[-1]:+.1%} | "
                      f"{ratio / statistics.median(earlier) - 1:+.1%} | {os.getloadavg()[0]:.1f} |", flush=True)
            error = f"{statistics.median(map(abs, errors)):.1%}" if errors else "n/a (no settings)"
            print(f"| {batch} | {mode} | {seconds:.0f} | median abs error | | | {error} | | "
                  f"{os.getloadavg()[0]:.1f} |", flush=True)


def _measure(model, pruned, backend, chw, batch, pairs) -> list[list[float]]:
    """Per pruned network, its latency ratios to the unpruned one in ``pairs`` interleaved pairs."""
    ratios = []
    for network in pruned:
        measured = measure_pairs({"unpruned": model, "pruned": network}, backend, chw, batch, pairs)
        ratios.append([p["pruned"]["median_ms"] / p["unpruned"]["median_ms"] for p in measured])
    return ratios

if __name__ == "__main__":
    main()
