"""trtexec results in foadx's latency schema: from a log file, or from running trtexec here.

trtexec measures on its own (warm-up, duration, CUDA graph), so its numbers are taken as it
prints them: ``latency_ms`` is its host Latency (H2D + GPU compute + D2H) per inference, the
stages go to ``stages_ms``, throughput is qps x batch. trtexec prints no per-round medians, so
``median_of_rounds_ms`` is its median.
"""

from __future__ import annotations

from typing import Any

from foadx.errors import BadInputError
from foadx.runtime.trtexec import TrtexecSummary


def trtexec_row(summary: TrtexecSummary, label: str, batch: int | None, precision: str, source: str) -> dict[str, Any]:
    """One ``results`` row of the latency schema from a trtexec summary (ms; images/s).

    Raises:
        BadInputError: neither the log nor ``batch`` gives the batch size, or they disagree.
    """
    if summary.batch is not None and batch is not None and summary.batch != batch:
        raise BadInputError(f"{source}: the log measured batch {summary.batch}, not the batch {batch} asked for")
    batch = summary.batch or batch
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
