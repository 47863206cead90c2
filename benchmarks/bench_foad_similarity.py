"""FOAD on MobileFaceNet at 112x112: forward pass vs similarity + selection vs a per-pair loop.

    .venv/bin/python benchmarks/bench_foad_similarity.py [--images 128] [--repeats 3] [--device cpu]

Calibration: the embedded real MNIST digits. Rows: the feature forward pass (all 17 decoupled
groups tapped), foadx's float64 Gram similarity + paper-mode greedy (t=2, s=0.5), and the
reference semantics computed pair by pair in numpy (one norm per channel pair over all images,
as the authors' code loops), on the same maps. Prints medians and the speedup against the loop,
and whether both choose the same kept sets.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import foadx
from foadx.data import calibration_images
from foadx.foad import SimilarityAccumulator, greedy_select
from foadx.pruning.features import FeatureTaps, group_maps
from foadx.pruning.groups import build_dependency_graph, discover_groups


def reference_similarity(maps: np.ndarray) -> np.ndarray:
    """S pair by pair, the way the reference code computes it (float64 here)."""
    n, c = maps.shape[:2]
    flat = maps.reshape(n, c, -1).astype(np.float64)
    S = np.ones((c, c))
    for i in range(c):
        for j in range(i + 1, c):
            distances = np.linalg.norm(flat[:, i] - flat[:, j], axis=1)
            S[i, j] = S[j, i] = np.mean(1.0 / (1.0 + distances))
    return S


def timed(function, repeats: int, sync) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        result = function()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-reference", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    torch.manual_seed(0)
    model = foadx.build_model("mobilefacenet").eval().to(device)
    images = calibration_images("demo", args.images, (112, 112), (0.5,) * 3, (0.5,) * 3, args.batch_size)
    batches = [batch.to(device) for batch in images]
    graph = build_dependency_graph(model, batches[0][:2])
    groups = [g for g in discover_groups(model, graph, ["embedding.conv"]) if g.prunable_by_default]
    taps = FeatureTaps(model, [p for g in groups for p in g.producers])

    def forward_only():
        with taps.attached():
            for batch in batches:
                taps.run(batch)

    with taps.attached():
        captured = [{k: v.clone() for k, v in taps.run(batch).items()} for batch in batches]

    def similarity_and_greedy():
        accumulators = {g.name: SimilarityAccumulator(g.channels) for g in groups}
        for maps in captured:
            for g in groups:
                accumulators[g.name].add(group_maps(maps, g))
        return {name: greedy_select(acc.similarity(), 2, 0.5) for name, acc in accumulators.items()}

    forward_time, _ = timed(forward_only, args.repeats, sync)
    similarity_time, foadx_kept = timed(similarity_and_greedy, args.repeats, sync)
    rows = [
        ("forward pass (tapped)", forward_time),
        ("similarity (float64 Gram) + greedy", similarity_time),
        ("foadx total", forward_time + similarity_time),
    ]
    same = "n/a"
    if not args.skip_reference:
        maps = {g.name: torch.cat([c[g.producers[0]] for c in captured]).cpu().numpy() for g in groups}
        start = time.perf_counter()
        reference_kept = {
            name: greedy_select(torch.from_numpy(reference_similarity(m)), 2, 0.5) for name, m in maps.items()
        }
        reference_time = time.perf_counter() - start
        rows.append(("reference per-pair numpy loop + greedy (1 run)", reference_time))
        same = str(reference_kept == foadx_kept)
    reference = None if args.skip_reference else rows[-1][1]
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU x{torch.get_num_threads()} threads"
    print(f"\nFOAD on MobileFaceNet 112x112, {sum(b.shape[0] for b in batches)} images, "
          f"{len(groups)} groups, {name}, torch {torch.__version__}, median of {args.repeats}")
    print("| stage | seconds | speedup vs per-pair loop |\n|---|---|---|")
    for label, seconds in rows:
        ratio = f"{reference / seconds:.1f}x" if reference else "-"
        print(f"| {label} | {seconds:.2f} | {ratio} |")
    print(f"same kept sets as the per-pair loop: {same}")


if __name__ == "__main__":
    main()
