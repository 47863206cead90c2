"""Latency targets at batch 8 and on two backends at once: each model profiled (in the default
mode), pruned to --target with the knapsack, then re-measured afterwards as the median of 5
interleaved pairs; prints profile seconds, rounds, the verdict and both intervals, and the load.

    .venv/bin/python benchmarks/bench_latency_targets.py [--target 1.5x] [--batch 8]
        [--models mobilefacenet@112,vgg16_cifar,resnet56_cifar/8,torchvision:resnet18@64]
    .venv/bin/python benchmarks/bench_latency_targets.py --models mobilefacenet@112 --batch 1 \
        --target "ort-cpu=1.5x openvino=1.4x"

   (a model is SPEC[@INPUT_SIZE][/ROUND_TO]; criterion l1, whose values cost least at 112x112)
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

import foadx
from foadx.data import calibration_images
from foadx.errors import FoadxError
from foadx.latency import profile, prune_to_latency
from foadx.latency.measure import measure_pairs
from foadx.latency.targets import parse_targets
from foadx.resolve import BuildOptions, resolve_model


def _model(text: str) -> tuple[torch.nn.Module, int | None]:
    spec, _, round_to = text.partition("/")
    spec, _, size = spec.partition("@")
    options = BuildOptions(input_size=(int(size), int(size))) if size else BuildOptions()
    return resolve_model(spec, options).module().eval(), int(round_to) if round_to else None


def run(text: str, target: str, batch: int, criterion: str) -> None:
    torch.manual_seed(0)
    model, round_to = _model(text)
    chw = foadx.provenance_of(model).source.input_chw
    images = calibration_images("demo", 32, chw[1:], (0.5,) * 3, (0.5,) * 3, 16, 0)
    tables, seconds = {}, {}
    for aim in parse_targets(target, "ort-cpu"):
        start = time.perf_counter()
        tables[aim.name] = profile(model, aim.backend, batch=batch, round_to=round_to)
        seconds[aim.name] = time.perf_counter() - start
    start = time.perf_counter()
    try:
        result = prune_to_latency(model, images, target, backend=next(iter(tables)), table=tables if len(tables) > 1
                                  else next(iter(tables.values())), batch=batch, criterion=criterion, round_to=round_to)
    except FoadxError as error:
        print(f"| {text} | {target} | failed: {error} |", flush=True)
        return
    prune_s = time.perf_counter() - start
    for record in result.report["latency"]["targets"]:
        pairs = measure_pairs({"unpruned": model, "pruned": result.model}, record["backend"], chw, batch, 5)
        speedups = [p["unpruned"]["median_ms"] / p["pruned"]["median_ms"] for p in pairs]
        ratio = record["speedup"]
        print(f"| {text} | {record['backend']}={record['target']} b{batch} | {tables[record['backend']].mode} "
              f"{seconds[record['backend']]:.0f} s | {prune_s:.0f} s | {len(record['rounds'])} | {record['verdict']} | "
              f"{ratio['median']:.2f}x [{ratio['low']:.2f}, {ratio['high']:.2f}] | "
              f"{statistics.median(speedups):.2f}x [{min(speedups):.2f}, {max(speedups):.2f}] | "
              f"{os.getloadavg()[0]:.1f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mobilefacenet@112,vgg16_cifar,resnet56_cifar/8,torchvision:resnet18@64")
    parser.add_argument("--target", default="1.5x")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--criterion", default="l1")
    args = parser.parse_args()
    print("| model | target | table (mode, profile) | prune | rounds | verdict | accepted speedup [min-max of 5] "
          "| re-measured later [min-max of 5] | load |")
    print("|---|---|---|---|---|---|---|---|---|")
    for text in args.models.split(","):
        run(text, args.target, args.batch, args.criterion)


if __name__ == "__main__":
    main()
