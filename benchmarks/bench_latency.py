"""How well a latency table predicts a whole network: MobileFaceNet (112x112) profiled on a
backend, then 5 random legal width settings pruned, predicted from the table (through its savings
curve, scaled by the unpruned network timed alongside, as the planner does) and measured (each
interleaved with the unpruned network); prints profiling time, table size and the errors.

    .venv/bin/python benchmarks/bench_latency.py [--backend ort-cpu] [--batch 1,8] [--settings 5]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time

import torch

import foadx
from foadx.bench import parse_batches
from foadx.data import calibration_images
from foadx.latency import profile
from foadx.latency.api import _setting
from foadx.latency.measure import measure_networks
from foadx.latency.plan import Planner, legal_widths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="ort-cpu")
    parser.add_argument("--batch", default="1,8")
    parser.add_argument("--settings", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = foadx.build_model("mobilefacenet").eval()
    images = calibration_images("demo", 32, (112, 112), (0.5,) * 3, (0.5,) * 3, 32, 0)
    print("| batch | profile s | table entries | table bytes | setting | predicted ms | measured ms | error |")
    print("|---|---|---|---|---|---|---|---|")
    for batch in parse_batches(args.batch):
        start = time.perf_counter()
        table = profile(model, args.backend, batch=batch)
        seconds = time.perf_counter() - start
        size = len(json.dumps(table.to_json(), indent=2))
        _, groups, units = _setting(model, batch, False, ())
        planner = Planner(table, units, groups, {g.name: {} for g in groups})
        rng = random.Random(args.seed)
        errors = []
        for number in range(args.settings):
            widths = {g.name: rng.choice(legal_widths(g, table.round_to)) for g in groups}
            pruned = foadx.prune(model, images, criterion="random", widths=widths).model
            measured = measure_networks({"unpruned": model, "pruned": pruned}, args.backend, (3, 112, 112), batch)
            # the table's prediction, moved to this minute's machine state as the planner moves it
            predicted = planner.predict(widths) * measured["unpruned"]["median_ms"] / table.network_ms
            error = predicted / measured["pruned"]["median_ms"] - 1
            errors.append(abs(error))
            print(f"| {batch} | {seconds:.0f} | {len(table.entries)} | {size:,} | {number + 1} | {predicted:.3f} | "
                  f"{measured['pruned']['median_ms']:.3f} | {error:+.1%} |")
        print(f"| {batch} | | | | median absolute error | | | {statistics.median(errors):.1%} |")


if __name__ == "__main__":
    main()
