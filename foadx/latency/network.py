"""In-network profiling (docs/latency.md, section 2): each group's candidate widths timed inside
the whole network, one group narrowed and the rest whole, each narrowed network interleaved with
the unpruned one as NetAdapt measures (Yang et al., ECCV 2018). What a width saves is then
measured with the layout conversions and fusions the deployed graph pays, not a unit's alone.

A group is timed at ``NETWORK_FRACTIONS`` of its channels (the nearest legal widths) and at its
narrowest legal width; the table interpolates between them (``LatencyTable.group_saving``). The
cost is one pair per group and width: it grows with groups x widths, the sum over groups.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from foadx.latency.measure import PairTimer
from foadx.latency.plan import legal_widths
from foadx.pruning.analysis import Analysis
from foadx.pruning.cut import cut
from foadx.pruning.groups import ChannelGroup
from foadx.pruning.scoring import score_channels
from foadx.pruning.select import Budget
from foadx.runtime import TimingSettings

NETWORK_FRACTIONS = (2 / 3, 1 / 3)  # besides the narrowest legal width
MAX_SAVING = 0.99  # what a table file may hold: a saving lies in (-1, 1)
PROFILE_TIMING = TimingSettings(warmup_ms=100.0, duration_s=1.0, min_iterations=10, rounds=5)


def network_widths(group: ChannelGroup, round_to: int) -> list[int]:
    """The widths of ``group`` timed in the network, widest first: the legal widths nearest
    ``NETWORK_FRACTIONS`` of its channels and its narrowest legal width, never the full width."""
    widths = legal_widths(group, round_to)[:-1]
    if not widths:
        return []
    chosen = {min(widths, key=lambda width: abs(width - fraction * group.channels)) for fraction in NETWORK_FRACTIONS}
    return sorted(chosen | {widths[0]}, reverse=True)


def in_network_savings(model: nn.Module, analysis: Analysis, backend: str, batch: int, round_to: int,
                       progress: Callable[[int, int], None] | None = None) -> dict[str, dict[int, float]]:
    """Per group, width -> the relative saving ``1 - narrowed / unpruned`` of the network with that
    group narrowed (channels of one random scoring: latency does not depend on which), each
    narrowed network timed interleaved with the unpruned one; the full width saves 0.

    ``progress(pairs done, pairs in all)`` after every pair.
    """
    groups = analysis.chosen
    plan = [(group, width) for group in groups for width in network_widths(group, round_to)]
    scores = score_channels(analysis, analysis.example, "random")
    savings = {group.name: {group.channels: 0.0} for group in groups}
    with PairTimer(backend, analysis.provenance.source.input_chw, batch, PROFILE_TIMING) as timer:
        unpruned = timer.step(model.eval())
        for done, (group, width) in enumerate(plan, 1):
            narrowed = cut(analysis, scores, Budget(widths={group.name: width})).model.eval()
            both = timer.time({"unpruned": unpruned, "narrowed": timer.step(narrowed)})
            saving = 1.0 - both["narrowed"]["median_ms"] / both["unpruned"]["median_ms"]
            savings[group.name][width] = min(max(saving, -MAX_SAVING), MAX_SAVING)  # beyond: a stall, not the width
            if progress:
                progress(done, len(plan))
    return savings
