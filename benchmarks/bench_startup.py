"""How fast the CLI answers when it has nothing to compute: `foadx --version`, `foadx --help`
and `import foadx`, against a bare Python start in the same run (median of several runs).

    .venv/bin/python benchmarks/bench_startup.py [--runs 9]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

FOADX = str(Path(sys.executable).with_name("foadx"))
CASES = {
    "python -c pass (baseline)": [sys.executable, "-c", "pass"],
    "python -c 'import foadx'": [sys.executable, "-c", "import foadx"],
    "foadx --version": [FOADX, "--version"],
    "foadx --help": [FOADX, "--help"],
    "python -c 'import torch' (for scale)": [sys.executable, "-c", "import torch"],
}


def seconds(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    runs = parser.parse_args().runs
    timings = {name: [] for name in CASES}
    for _ in range(runs):  # interleaved: drift hits every case alike
        for name, command in CASES.items():
            timings[name].append(seconds(command))
    baseline = statistics.median(timings["python -c pass (baseline)"])
    print(f"| command | median s ({runs} runs) | over bare python |")
    print("|---|---|---|")
    for name, values in timings.items():
        median = statistics.median(values)
        print(f"| `{name}` | {median:.3f} | +{median - baseline:.3f} s |")


if __name__ == "__main__":
    main()
