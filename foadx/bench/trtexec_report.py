"""trtexec results in foadx's latency schema: from a log file, or from running trtexec here.

trtexec measures on its own (warm-up, duration, CUDA graph), so its numbers are taken as it
prints them: ``latency_ms`` is its host Latency (H2D + GPU compute + D2H) per inference, the
stages go to ``stages_ms``, throughput is qps x batch. trtexec prints no per-round medians, so
``median_of_rounds_ms`` is its median.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from foadx.errors import BadInputError, FoadxError, MissingDependencyError
from foadx.runtime.trtexec import TrtexecOptions, TrtexecSummary, parse_trtexec_log, trtexec_command

TRTEXEC_MISSING = (
    "trtexec is not on PATH: it ships with TensorRT (NVIDIA's TensorRT containers, JetPack on Jetson, "
    "or the TensorRT tar/deb packages' bin/ folder)"
)


def trtexec_row(summary: TrtexecSummary, label: str, batch: int | None, precision: str, source: str) -> dict[str, Any]:
    batch = summary.batch or batch  # the log's own command line wins over the caller's guess
    if batch is None:
        raise BadInputError(f"{source}: the log does not say the batch size; give it with --batch")
    latency = summary.stages["latency"]
    return {
        "model": label, "backend": "trtexec", "batch": batch, "precision": precision,
        "backend_settings": {"tensorrt": summary.tensorrt_version},
        "iterations": summary.iterations,
        "latency_ms": dict(latency),
        "stages_ms": {stage: dict(values) for stage, values in summary.stages.items() if stage != "latency"},
        "round_medians_ms": [latency["p50"]],
        "median_of_rounds_ms": latency["p50"],
        "throughput_ips": summary.throughput_qps * (1 if summary.implicit_batch else batch),
        "source": source,
    }


def run_trtexec(model: Path, input_name: str, chw: tuple[int, int, int], options: TrtexecOptions,
                timeout_s: float = 3600) -> TrtexecSummary:
    """Runs trtexec on an ONNX file or engine here and parses its summary."""
    executable = shutil.which("trtexec")
    if executable is None:
        raise MissingDependencyError(TRTEXEC_MISSING)
    command = trtexec_command(model, input_name, chw, options, executable)
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as error:
        raise FoadxError(f"trtexec did not finish within {timeout_s:g} s: {' '.join(command)}") from error
    if completed.returncode != 0:
        tail = " | ".join((completed.stdout + completed.stderr).strip().splitlines()[-3:])
        raise FoadxError(f"trtexec failed (exit {completed.returncode}): {tail}")
    return parse_trtexec_log(completed.stdout, "trtexec output")
