"""Issue 25's measurement: does a pruned face model keep an enrolled gallery valid?

On the embedded digits as the face stand-in (ArcFace on digits 0-6, verification on every pair of
the held-out 7-9, as ``make demo``): the unpruned teacher, FOAD at the paper's budget fine-tuned
plainly, with ``--distill-from`` (embedding distillation) and with ``--compatible-with`` (BCT);
for each, same-model TAR at FAR 1e-3 / 1e-4 and EER, and the cross-model TAR against the teacher
(teacher gallery x student probe, both directions). Then the time of all-pairs evaluation of
1k and 10k random unit embeddings. Writes OUT/face-compat.json and prints a Markdown table.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_face_compat.py --out out/bench-face-compat \
        [--teacher-epochs 2] [--epochs 2] [--compatibility-weight 1.0]

(On a shared 2-core machine, one torch thread per process: two threads ran a training step
about 6x slower than one under load.)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

FOADX = str(Path(sys.executable).parent / "foadx")


def foadx(*args: object) -> None:
    started = time.perf_counter()
    subprocess.run([FOADX, *map(str, args)], check=True)
    print(f"  foadx {' '.join(map(str, args[:2]))} ... {time.perf_counter() - started:.0f} s", flush=True)


def train(out: Path, args: argparse.Namespace) -> dict[str, Path]:
    """The teacher, its FOAD-pruned student and the student's three fine-tunes."""
    teacher, pruned = out / "teacher", out / "foad"
    if not (teacher / "plan.json").is_file():
        foadx("finetune", "mobilefacenet", "--input-size", 32, "--task", "face", "--data", "demo",
              "--epochs", args.teacher_epochs, "--lr", 0.1, "--margin-warmup-epochs", 1, "--out", teacher, "--quiet", "--force")
    if not (pruned / "plan.json").is_file():
        foadx("prune", teacher, "--data", "demo", "--flops-target", 0.636, "--round-to", 16, "--recalibrate-bn",
              "--out", pruned, "--quiet", "--force")
    variants = {"plain": [], "distill": ["--distill-from", teacher],
                "compatible": ["--compatible-with", teacher, "--compatibility-weight", args.compatibility_weight]}
    models = {"unpruned": teacher}
    for name, extra in variants.items():
        folder = out / f"foad-{name}"
        if not (folder / "plan.json").is_file():
            foadx("finetune", pruned, "--task", "face", "--data", "demo", "--epochs", args.epochs, "--lr", 0.05,
                  *extra, "--out", folder, "--quiet", "--force")
        models[f"FOAD + {name} fine-tune"] = folder
    return models


def evaluate(models: dict[str, Path], out: Path) -> list[dict[str, object]]:
    teacher = models["unpruned"]
    rows = []
    for name, folder in models.items():
        report = out / f"eval-{folder.name}.json"
        if not report.is_file():
            extra = [] if folder == teacher else ["--gallery-model", teacher]
            foadx("eval", folder, "--data", "demo", "--protocol", "all", *extra, "--report", report, "--quiet")
        roc = json.loads(report.read_text())["roc"]
        own = roc[0]
        cross = next((row for row in roc if row["cross"]), None)
        rows.append({"model": name, **{f"tar_{far:g}": _tar(own, far) for far in (1e-3, 1e-4)}, "eer": own["eer"],
                     **{f"cross_tar_{far:g}": _tar(cross, far) if cross else None for far in (1e-3, 1e-4)},
                     "cross_eer": cross["eer"] if cross else None})
    return rows


def _tar(row: dict, far: float) -> float | None:
    return next(point["tar"] for point in row["points"] if point["far_target"] == far)


def time_all_pairs(count: int, dimensions: int = 128, identities: int = 100) -> dict[str, object]:
    from foadx.evaluate.allpairs import all_pairs_roc

    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(count, dimensions)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    labels = rng.integers(0, identities, count)
    started = time.perf_counter()
    result = all_pairs_roc(embeddings, labels)
    return {"images": count, "pairs": result.genuine + result.impostor, "mode": result.mode,
            "seconds": round(time.perf_counter() - started, 2)}


def markdown(rows: list[dict[str, object]], timings: list[dict[str, object]]) -> str:
    def cell(value: object) -> str:
        return "n/a" if value is None else f"{100 * float(value):.1f}"

    lines = ["| model | TAR@1e-3 | TAR@1e-4 | EER | cross TAR@1e-3 | cross TAR@1e-4 | cross EER |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {cell(r['tar_0.001'])} | {cell(r['tar_0.0001'])} | {cell(r['eer'])} | "
              f"{cell(r['cross_tar_0.001'])} | {cell(r['cross_tar_0.0001'])} | {cell(r['cross_eer'])} |" for r in rows]
    lines += ["", "| images | pairs | mode | seconds |", "|---|---|---|---|"]
    lines += [f"| {t['images']} | {t['pairs']} | {t['mode']} | {t['seconds']} |" for t in timings]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/bench-face-compat"))
    parser.add_argument("--teacher-epochs", type=int, default=2, help="training epochs of the unpruned teacher")
    parser.add_argument("--epochs", type=int, default=2, help="fine-tune epochs of each student")
    parser.add_argument("--compatibility-weight", type=float, default=1.0, help="the BCT influence loss's weight")
    parser.add_argument("--timing-only", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    timings = [time_all_pairs(count) for count in (1_000, 10_000)]
    rows = [] if args.timing_only else evaluate(train(args.out, args), args.out)
    settings = {key: getattr(args, key) for key in ("teacher_epochs", "epochs", "compatibility_weight")}
    (args.out / "face-compat.json").write_text(json.dumps({"settings": settings, "rows": rows, "timings": timings},
                                                          indent=2))
    print(markdown(rows, timings))


if __name__ == "__main__":
    main()
