"""In-network profiling (docs/latency.md, section 2): each group's candidate widths timed inside
the whole network, one group narrowed and the rest whole, each narrowed network interleaved with
the unpruned one as NetAdapt measures (Yang et al., ECCV 2018). What a width saves is then
measured with the layout conversions and fusions the deployed graph pays, not a unit's alone.

A group is timed at ``NETWORK_FRACTIONS`` of its channels (the nearest legal widths) and at its
narrowest legal width; the table interpolates between them (``LatencyTable.group_saving``). The
cost is one pair per group and width: it grows with groups x widths, the sum over groups.

One pair per point is cheap but fragile: work elsewhere on the machine that lands on the unpruned
network's turns gives a width a saving it does not have, and the knapsack buys it. So each pair's
rounds are compared (``PairSaving.spread``: how far apart its per-round ratios lie), and the
points whose rounds disagree far more than the run's typical pair (``disturbed``) are timed
``RETIMES`` more times after the others, their saving the median of all their pairs.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass

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
SPREAD_FACTOR = 3.0  # a pair whose rounds disagree this many times more than the run's median pair ...
MIN_SPREAD = 0.05  # ... and by more than this (in pruned / unpruned ratio) is disturbed
RETIMES = 2  # more pairs for a disturbed point: its saving is then the median of three


@dataclass(frozen=True)
class PairSaving:
    """One interleaved pair: the saving ``1 - narrowed / unpruned`` of their medians of rounds and
    the spread (max - min) of the per-round ratios narrowed / unpruned."""

    saving: float
    spread: float

    @classmethod
    def of(cls, narrowed_rounds_ms: list[float], unpruned_rounds_ms: list[float]) -> PairSaving:
        """From the two networks' per-round medians (ms), round i of one beside round i of the other."""
        ratios = [n / u for n, u in zip(narrowed_rounds_ms, unpruned_rounds_ms)]
        saving = 1.0 - statistics.median(narrowed_rounds_ms) / statistics.median(unpruned_rounds_ms)
        return cls(saving, max(ratios) - min(ratios))


def disturbed(pairs: Mapping[Hashable, PairSaving]) -> list[Hashable]:
    """The points whose pair's rounds disagree far more than the run's typical pair: spread above
    both ``MIN_SPREAD`` and ``SPREAD_FACTOR`` x the median spread of all pairs."""
    if not pairs:
        return []
    limit = max(MIN_SPREAD, SPREAD_FACTOR * statistics.median(pair.spread for pair in pairs.values()))
    return [point for point, pair in pairs.items() if pair.spread > limit]


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
    narrowed network timed interleaved with the unpruned one; the full width saves 0. A point
    whose pair was ``disturbed`` is timed ``RETIMES`` more times, its saving the median.

    ``progress(pairs done, pairs in all)`` after every pair (the total grows by the re-timings).
    """
    groups = {group.name: group for group in analysis.chosen}
    points = [(group.name, width) for group in groups.values() for width in network_widths(group, round_to)]
    scores = score_channels(analysis, analysis.example, "random")
    timed: dict[tuple[str, int], list[PairSaving]] = {}
    with PairTimer(backend, analysis.provenance.source.input_chw, batch, PROFILE_TIMING) as timer:
        unpruned = timer.step(model.eval())

        def time_pair(name: str, width: int) -> PairSaving:
            narrowed = timer.step(cut(analysis, scores, Budget(widths={name: width})).model.eval())
            both = timer.time({"unpruned": unpruned, "narrowed": narrowed})
            return PairSaving.of(both["narrowed"]["round_medians_ms"], both["unpruned"]["round_medians_ms"])

        for point in points:
            timed[point] = [time_pair(*point)]
            if progress:
                progress(len(timed), len(points))
        retime = disturbed({point: pairs[0] for point, pairs in timed.items()})
        for done, point in enumerate(retime, 1):
            timed[point] += [time_pair(*point) for _ in range(RETIMES)]
            if progress:
                progress(len(points) + done * RETIMES, len(points) + len(retime) * RETIMES)
    return _savings(groups, timed)


def _savings(groups: Mapping[str, ChannelGroup],
             timed: Mapping[tuple[str, int], list[PairSaving]]) -> dict[str, dict[int, float]]:
    """Per group, width -> the median saving of its pairs, within +-``MAX_SAVING`` (beyond: a
    stall, not the width); the full width saves 0."""
    savings = {name: {group.channels: 0.0} for name, group in groups.items()}
    for (name, width), pairs in timed.items():
        saving = statistics.median(pair.saving for pair in pairs)
        savings[name][width] = min(max(saving, -MAX_SAVING), MAX_SAVING)
    return savings
