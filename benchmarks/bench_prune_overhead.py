"""How much the whole ``foadx prune`` command costs over a plain Torch-Pruning script doing the
same job, and how long FOAD's own scoring takes apart from that.

1. ``foadx prune mobilefacenet --data demo --criterion l1 --ratio 0.5`` against
   ``benchmarks/tp_l1_prune.py`` (builds the model, removes the same groups' channels by L1,
   saves): both as fresh processes, interleaved, median of ``--runs`` pairs, wall seconds.
2. The command's phases in one process: resolve the model, read the calibration images,
   analyse (trace the groups), score, cut, save.
3. FOAD's scoring alone (``score_channels``, after one analysis) at 128 and 512 images of
   MobileFaceNet 112x112, median of ``--runs``.

    .venv/bin/python benchmarks/bench_prune_overhead.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from processes import FOADX, ROOT, wall  # benchmarks/processes.py, beside this script


def commands(scratch: Path) -> tuple[list[str], list[str]]:
    inspected = subprocess.run([*FOADX, "inspect", "mobilefacenet", "--json"], check=True, capture_output=True, text=True)
    groups = [group["producers"][0] for group in json.loads(inspected.stdout)["groups"] if group["default"]]
    (scratch / "groups.json").write_text(json.dumps(groups))
    foadx = [*FOADX, "prune", "mobilefacenet", "--data", "demo", "--criterion", "l1", "--ratio", "0.5",
             "--out", str(scratch / "foadx"), "--force", "--quiet"]
    plain = [sys.executable, str(ROOT / "benchmarks" / "tp_l1_prune.py"), str(scratch / "groups.json"),
             str(scratch / "tp.pt")]
    return foadx, plain


def command_against_script(runs: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        foadx, plain = commands(Path(folder))
        wall(foadx), wall(plain)  # warm the file cache
        times = {"foadx prune": [], "Torch-Pruning script": []}
        for _ in range(runs):
            times["foadx prune"].append(wall(foadx))
            times["Torch-Pruning script"].append(wall(plain))
    base = statistics.median(times["Torch-Pruning script"])
    print("| whole job (fresh process) | median s | min s | ratio to the script |\n|---|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.2f} | {min(values):.2f} | {statistics.median(values) / base:.2f}x |")


def phases() -> None:
    import foadx
    from foadx.data.calibration import images_for
    from foadx.pruning.analysis import analyse
    from foadx.pruning.cut import cut
    from foadx.pruning.scoring import score_channels
    from foadx.pruning.select import Budget

    seconds: dict[str, float] = {}

    def timed(name, function):
        started = time.perf_counter()
        value = function()
        seconds[name] = time.perf_counter() - started
        return value

    model = timed("resolve the model", lambda: foadx.resolve_model("mobilefacenet").module())
    source = model.foadx_provenance.source
    images = timed("read 128 calibration images", lambda: images_for(source, "demo", 128))
    first = next(iter(images))
    analysis = timed("analyse (trace the groups)", lambda: analyse(model, first))
    scores = timed("score (l1)", lambda: score_channels(analysis, images, "l1"))
    result = timed("cut", lambda: cut(analysis, scores, Budget(ratio=0.5), images=images))
    with tempfile.TemporaryDirectory() as folder:
        timed("save the artifact", lambda: result.save(Path(folder) / "a"))
    print("\n| phase (one process) | s |\n|---|---|")
    for name, value in seconds.items():
        print(f"| {name} | {value:.2f} |")


def foad_scoring(runs: int) -> None:
    import foadx
    from foadx.data.calibration import images_for
    from foadx.pruning.analysis import analyse
    from foadx.pruning.scoring import score_channels

    model = foadx.resolve_model("mobilefacenet").module()
    source = model.foadx_provenance.source
    print("\n| FOAD scoring, MobileFaceNet 112x112 | median s | per image ms |\n|---|---|---|")
    for count in (128, 512):
        images = images_for(source, "demo", count)
        analysis = analyse(model, next(iter(images)))
        values = []
        for _ in range(runs):
            started = time.perf_counter()
            score_channels(analysis, images, "foad")
            values.append(time.perf_counter() - started)
        median = statistics.median(values)
        print(f"| {count} images | {median:.2f} | {1000 * median / count:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    command_against_script(runs)
    phases()
    foad_scoring(max(1, runs // 2))


if __name__ == "__main__":
    main()
