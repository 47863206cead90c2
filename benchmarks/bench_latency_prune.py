"""Latency-aware FOAD against a MACs budget and against l1 at the same latency target.

1. Digits (MobileFaceNet 32x32, trained as in `make demo`), on --backend at batch 1: FOAD with
   --latency-target, l1 with the same target, and FOAD with the --flops-target that measures as
   fast as the FOAD latency plan (found by bisection, each candidate timed beside the unpruned
   network). Held-out top-1 after BN re-estimation and after the same 1-epoch fine-tune.
2. Latency-target runs on other models (profile time, table size, rounds, target vs measured).

    .venv/bin/python benchmarks/bench_latency_prune.py [--backend ort-cpu] [--target 1.5x]
        [--models mobilefacenet@112,resnet56_cifar,resnet56_cifar/8,vgg16_cifar,torchvision:resnet18@64]

   (a model is SPEC[@INPUT_SIZE][/ROUND_TO])
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

import foadx
from foadx.data import calibration_images
from foadx.data.labeled import open_labeled
from foadx.errors import FoadxError
from foadx.evaluate.runner import evaluate_model
from foadx.latency import profile, prune_to_latency
from foadx.latency.measure import measure_networks
from foadx.provenance import provenance_of
from foadx.resolve import resolve_model
from foadx.train import FinetuneConfig
from foadx.tasks.finetune import finetune_to_artifact

DIGITS = {"input_size": (32, 32), "embedding_size": 10}


def _train(model: torch.nn.Module, out: Path, epochs: int, lr: float) -> torch.nn.Module:
    config = FinetuneConfig(task="classify", epochs=epochs, lr=lr, flip=False)
    finetune_to_artifact(model, open_labeled("demo", "train", "classify"), out, config, {"data": "demo"})
    return resolve_model(str(out)).module()


def _top1(model: torch.nn.Module) -> float:
    return evaluate_model(model, "demo", "classify").summary()["top1"]


def _speedup(base: torch.nn.Module, pruned: torch.nn.Module, backend: str, pairs: int = 3) -> tuple[float, float]:
    """The pruned network's median ms and its speedup, each the median over ``pairs`` timings
    beside the unpruned network (one pair on this VM moves by 10-20%)."""
    timed = [measure_networks({"unpruned": base, "pruned": pruned}, backend, (3, 32, 32), 1) for _ in range(pairs)]
    return (statistics.median(both["pruned"]["median_ms"] for both in timed),
            statistics.median(both["unpruned"]["median_ms"] / both["pruned"]["median_ms"] for both in timed))


def _matching_flops_target(base, images, speedup: float, backend: str, steps: int = 5) -> tuple[float, object]:
    """Bisection on the MACs fraction removed for FOAD's plan that measures at ``speedup``: of
    the fractions tried, the smallest that measured at least that fast (else the fastest), so
    that the MACs plan is compared at equal or higher measured speed, never slower."""
    low, high, tried = 0.05, 0.9, []
    for _ in range(steps):
        middle = (low + high) / 2
        result = foadx.prune(base, images, flops_target=middle, round_to=16, recalibrate_bn=True)
        _, measured = _speedup(base, result.model, backend)
        tried.append((middle, measured, result))
        low, high = (middle, high) if measured < speedup else (low, middle)
    fast_enough = [entry for entry in tried if entry[1] >= speedup]
    fraction, _, result = min(fast_enough, key=lambda entry: entry[0]) if fast_enough else max(tried, key=lambda entry: entry[1])
    return fraction, result


def digits_table(backend: str, target: str, scratch: Path) -> None:
    torch.manual_seed(0)
    base = _train(foadx.build_model("mobilefacenet", **DIGITS), scratch / "base", epochs=2, lr=0.1).eval()
    images = calibration_images("demo", 128, (32, 32), (0.5,) * 3, (0.5,) * 3, 32, 0)
    start = time.perf_counter()
    table = profile(base, backend)
    print(f"digits table: {time.perf_counter() - start:.0f} s, {len(table.entries)} entries, unpruned {table.network_ms:.3f} ms")
    runs = {}
    for criterion, allocation in (("foad", "knapsack"), ("foad", "global"), ("l1", "knapsack"), ("random", "knapsack")):
        extra = f" --allocation {allocation}" if allocation != "knapsack" else ""
        start = time.perf_counter()
        runs[f"{criterion} --latency-target {target}{extra}"] = prune_to_latency(
            base, images, target, backend=backend, table=table, criterion=criterion, recalibrate_bn=True,
            allocation=allocation)
        print(f"{criterion} {allocation}: {time.perf_counter() - start:.0f} s")
    foad_speedup = _speedup(base, runs[f"foad --latency-target {target}"].model, backend)[1]
    fraction, result = _matching_flops_target(base, images, foad_speedup, backend)
    runs[f"foad --flops-target {fraction:.3f}"] = result
    print(f"\n| plan ({backend}, batch 1) | rounds | measured ms | speedup | MACs | top-1 BN re-est | top-1 fine-tuned |")
    print("|---|---|---|---|---|---|---|")
    print(f"| unpruned | | | 1.00x | {runs[next(iter(runs))].report['macs']['before'] / 1e6:.2f} M | {_top1(base):.4f} | |")
    for name, result in runs.items():
        measured_ms, speedup = _speedup(base, result.model, backend)
        pruned_top1 = _top1(result.model)  # before the fine-tune, which trains result.model in place
        tuned = _train(result.model, scratch / name.replace(" ", "_"), epochs=1, lr=0.02)
        rounds = len(result.report["latency"]["rounds"]) if "latency" in result.report else "-"
        print(f"| {name} | {rounds} | {measured_ms:.3f} | {speedup:.2f}x | {result.report['macs']['after'] / 1e6:.2f} M | "
              f"{pruned_top1:.4f} | {_top1(tuned):.4f} |")


def models_table(models: list[str], backend: str, target: str) -> None:
    print("\n| model | input | round to | profile s | entries | rounds | target ms | measured ms (p90) | speedup |")
    print("|---|---|---|---|---|---|---|---|---|")
    for entry in models:
        entry, _, round_to = entry.partition("/")
        spec, _, size = entry.partition("@")
        input_size = (int(size), int(size)) if size else None
        round_to = int(round_to) if round_to else None
        torch.manual_seed(0)
        model = foadx.build_model(spec, input_size).eval()
        shape = provenance_of(model).source.input_size
        images = calibration_images("demo", 64, tuple(shape), (0.5,) * 3, (0.5,) * 3, 32, 0)
        start = time.perf_counter()
        table = profile(model, backend, round_to=round_to)
        seconds = time.perf_counter() - start
        try:
            result = prune_to_latency(model, images, target, backend=backend, table=table)
        except FoadxError as error:
            print(f"| {spec} | {shape[0]} | {table.round_to} | {seconds:.0f} | {len(table.entries)} | failed: {error} |")
            continue
        latency = result.report["latency"]
        print(f"| {spec} | {shape[0]} | {table.round_to} | {seconds:.0f} | {len(table.entries)} | {len(latency['rounds'])} | "
              f"{latency['target_ms']:.3f} | {latency['measured_ms']:.3f} ({latency['measured_p90_ms']:.3f}) | "
              f"{latency['unpruned_ms'] / latency['measured_ms']:.2f}x |")
        print("  rounds: " + json.dumps([{k: round(v, 3) for k, v in r.items() if isinstance(v, float)} for r in latency["rounds"]]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="ort-cpu")
    parser.add_argument("--target", default="1.5x")
    parser.add_argument("--models", default="mobilefacenet@112,resnet56_cifar,resnet56_cifar/8,vgg16_cifar,torchvision:resnet18@64")
    parser.add_argument("--skip-digits", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="foadx-bench-") as scratch:
        if not args.skip_digits:
            digits_table(args.backend, args.target, Path(scratch))
    if args.models:
        models_table(args.models.split(","), args.backend, args.target)


if __name__ == "__main__":
    main()
