"""Latency-aware pruning: a measured lookup table per backend, a multiple-choice knapsack over
group widths with FOAD's values, and measured rounds until the target holds (docs/latency.md)."""

from foadx.latency.api import DEFAULT_MODE, LatencyTarget, profile, profiling_mode, prune_to_latency
from foadx.latency.table import LatencyTable, load_table
from foadx.latency.targets import format_ms

__all__ = ["DEFAULT_MODE", "LatencyTable", "LatencyTarget", "format_ms", "load_table", "profile", "profiling_mode", "prune_to_latency"]
