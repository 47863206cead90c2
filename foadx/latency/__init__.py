"""Latency-aware pruning: a measured lookup table per backend, a multiple-choice knapsack over
group widths with FOAD's values, and measured rounds until the target holds (docs/latency.md)."""

from foadx.latency.api import LatencyTarget, profile, prune_to_latency
from foadx.latency.table import LatencyTable, load_table

__all__ = ["LatencyTable", "LatencyTarget", "load_table", "profile", "prune_to_latency"]
