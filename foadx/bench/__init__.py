"""``foadx bench``: interleaved latency measurement, reports, and the regression gate."""

from foadx.bench.gate import GateResult, compare_to_baseline
from foadx.bench.models import BenchModel, bench_model
from foadx.bench.run import measure_models, parse_batches, run_bench
from foadx.bench.speedup import Speedup, paired_speedup

__all__ = [
    "BenchModel",
    "GateResult",
    "Speedup",
    "bench_model",
    "compare_to_baseline",
    "measure_models",
    "paired_speedup",
    "parse_batches",
    "run_bench",
]
