"""What the benchmark scripts that time whole ``foadx`` commands share: the repository root, the
command as a fresh process, and its wall time."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOADX = [sys.executable, "-m", "foadx_cli"]


def wall(command: list[str]) -> float:
    """Runs ``command`` in the repository root (its failure raises); its wall time in seconds."""
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - started
