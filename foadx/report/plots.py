"""Figures of foadx results, drawn with matplotlib's headless Agg backend from plain report data
(no models needed): each function writes NAME.png and NAME.svg into a folder and returns the
PNG's path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from foadx.errors import MissingDependencyError
from foadx.report.speedup import STATED_AS_FACT

Point = dict[str, Any]  # {"label", "criterion", "latency_ms", "macs", "accuracy", "reachable"}, optionally
# "latency_interval_ms" ([lo, hi] ms) and "speedup_verdict" (foadx.report.speedup.VERDICTS)
MAX_WIDTH_IN = 30.0  # inches (3,000 pixels): callers bound the rows drawn, this bounds the canvas


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as error:
        raise MissingDependencyError('plots need matplotlib: pip install "foadx[plots]"') from error
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    # SVG text, no embedded fonts; every string drawn as plain text (a model named "$\\frac{" is not mathtext)
    plt.rcParams.update({"svg.fonttype": "none", "figure.dpi": 100, "font.size": 9, "text.parse_math": False,
                         "text.usetex": False})
    return plt


def _save(figure: Any, folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    for suffix in ("png", "svg"):
        figure.savefig(folder / f"{name}.{suffix}", format=suffix, metadata={"Date": None} if suffix == "svg" else None)
    _pyplot().close(figure)
    return folder / f"{name}.png"


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (lower x, higher y), by x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def _stated(point: Point) -> bool:
    """Whether a point's latency may be drawn as fact: its speedup supported, or no verdict recorded."""
    return point.get("speedup_verdict") in (None, *STATED_AS_FACT)


def _latency_uncertainty(axis: Any, points: list[Point]) -> None:
    """Each point's ``latency_interval_ms`` as a horizontal error bar; a point whose speedup its
    measurement does not support hollowed and labelled with its verdict (and left off the front)."""
    for p in points:
        interval = p.get("latency_interval_ms")
        if interval:
            below, above = _error(p["latency_ms"], interval)
            axis.errorbar(p["latency_ms"], p["accuracy"], xerr=[[below], [above]], fmt="none", ecolor="gray", capsize=3)
        if not _stated(p):
            axis.scatter(p["latency_ms"], p["accuracy"], s=60, facecolors="white", edgecolors="gray", zorder=3)
            axis.annotate(p["speedup_verdict"], xy=(p["latency_ms"], p["accuracy"]), fontsize=6, color="gray")


def tradeoff(points: list[Point], folder: Path, name: str = "tradeoff", accuracy_label: str = "held-out accuracy") -> Path:
    """Accuracy (``accuracy_label`` names it) against measured latency and against MACs, one line
    per criterion, the Pareto front ringed, the unpruned model as a star, unreachable points as
    crosses on the axis; on the latency axis each point's interval as an error bar and a latency
    its measurement does not support hollow, labelled and off the front (``_latency_uncertainty``)."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for axis, x_key, x_label in ((axes[0], "latency_ms", "measured latency (ms)"), (axes[1], "macs", "MACs (M)")):
        reachable = [p for p in points if p.get("reachable", True) and p.get(x_key) is not None
                     and p.get("accuracy") is not None]
        scale = 1e6 if x_key == "macs" else 1.0
        for criterion in dict.fromkeys(p["criterion"] for p in reachable if p["criterion"] != "unpruned"):
            line = sorted((p for p in reachable if p["criterion"] == criterion), key=lambda p: p[x_key])
            axis.plot([p[x_key] / scale for p in line], [p["accuracy"] for p in line], marker="o", label=criterion)
        for p in reachable:
            if p["criterion"] == "unpruned":
                axis.plot(p[x_key] / scale, p["accuracy"], marker="*", markersize=12, color="black", label="unpruned")
        if x_key == "latency_ms":
            _latency_uncertainty(axis, reachable)
            reachable = [p for p in reachable if _stated(p)]
        front = pareto_front([(p[x_key], p["accuracy"]) for p in reachable])
        axis.scatter([reachable[i][x_key] / scale for i in front], [reachable[i]["accuracy"] for i in front],
                     s=140, facecolors="none", edgecolors="red", label="Pareto front")
        unreachable = [p for p in points if not p.get("reachable", True)]
        for row, p in enumerate(unreachable):
            axis.annotate(f"{p['label']}: unreachable", xy=(0.02, 0.03 + 0.07 * row), xycoords="axes fraction",
                          color="gray", fontsize=7)
        axis.set_xlabel(x_label)
        axis.set_ylabel(accuracy_label)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return _save(figure, folder, name)


def widths(groups: list[dict[str, Any]], folder: Path, name: str = "widths", title: str = "") -> Path:
    """Per group (``name``, ``before``, ``after``, ``coupled``: a prune report's groups), original
    against kept channels; residual-coupled groups hatched."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(min(max(5.0, 0.35 * len(groups) + 2), MAX_WIDTH_IN), 3.4))
    positions = list(range(len(groups)))
    axis.bar(positions, [g["before"] for g in groups], color="#cccccc", label="original")
    plain = [i for i, g in enumerate(groups) if not g.get("coupled")]
    coupled = [i for i, g in enumerate(groups) if g.get("coupled")]
    axis.bar(plain, [groups[i]["after"] for i in plain], color="#1f77b4", label="kept")
    if coupled:
        axis.bar(coupled, [groups[i]["after"] for i in coupled], color="#ff7f0e", hatch="//", label="kept (coupled)")
    axis.set_xticks(positions, [g["name"] for g in groups], rotation=75, fontsize=6)
    axis.set_ylabel("channels")
    axis.set_title(title)
    axis.legend(fontsize=7)
    return _save(figure, folder, name)


def similarity(matrix: Any, kept: Sequence[int], folder: Path, name: str = "similarity", title: str = "") -> Path:
    """A group's FOAD similarity matrix as a heatmap, the kept channels marked on both axes."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(4.6, 4.0))
    image = axis.imshow(matrix, cmap="viridis", vmin=0, vmax=1)
    figure.colorbar(image, ax=axis, label="similarity")
    size = len(matrix)
    axis.scatter(list(kept), [-1.0] * len(kept), marker="v", color="red", s=8, clip_on=False, label="kept")
    axis.scatter([-1.0] * len(kept), list(kept), marker=">", color="red", s=8, clip_on=False)
    axis.set_xlim(-1.5, size - 0.5)
    axis.set_ylim(size - 0.5, -1.5)
    axis.set_title(title, fontsize=8)
    axis.legend(fontsize=7, loc="lower right")
    return _save(figure, folder, name)


def _error(value: float, interval: Sequence[float] | None) -> tuple[float, float]:
    """Matplotlib's (below, above) error-bar lengths of ``value`` within ``interval`` (0 without one)."""
    return (value - interval[0], interval[1] - value) if interval else (0.0, 0.0)


def _speedup_bars(axis: Any, positions: list[float], rows: list[dict[str, Any]]) -> None:
    """Speedup bars of latency result rows, each with its interval as an error bar: a ratio its
    measurement supports (or a report without verdicts) as a solid bar; any other as a hollow,
    hatched bar labelled with its verdict, so it is not read as fact."""
    values = [r.get("speedup_vs_first") or 0.0 for r in rows]
    stated = [r.get("speedup_verdict") in (None, *STATED_AS_FACT) for r in rows]
    for solid, label in ((True, "measured"), (False, "not stated as fact (verdict on the bar)")):
        chosen = [i for i in range(len(rows)) if stated[i] == solid and values[i]]
        if not chosen:
            continue
        errors = [_error(values[i], rows[i].get("speedup_interval")) for i in chosen]
        style = {"color": "#1f77b4"} if solid else {"facecolor": "none", "edgecolor": "gray", "hatch": "//"}
        axis.bar([positions[i] for i in chosen], [values[i] for i in chosen], width=0.4, label=label,
                 yerr=[[below for below, _ in errors], [above for _, above in errors]], capsize=3, **style)
        for i in [] if solid else chosen:
            axis.annotate(rows[i]["speedup_verdict"], xy=(positions[i], values[i]), fontsize=6, color="gray",
                          rotation=90, ha="center", va="bottom")


def latency(report: dict[str, Any], folder: Path, macs_ideal: dict[str, float] | None = None,
            name: str = "latency") -> Path:
    """Per model/backend/batch the spread of round medians and p50/p90 (box), and the speedup
    bars with their intervals (``_speedup_bars``: unsupported ratios hollow and labelled) and
    the MAC-ideal speedup (unpruned MACs / model MACs) beside them."""
    plt = _pyplot()
    rows = report["results"]
    labels = [f"{Path(r['model']).stem}\n{r['backend']} b{r['batch']}" for r in rows]
    figure, axes = plt.subplots(1, 2, figsize=(min(max(7.0, 1.3 * len(rows) + 3), MAX_WIDTH_IN), 3.6))
    boxes = [[*r["round_medians_ms"], r["latency_ms"]["p50"], r["latency_ms"]["p90"]] for r in rows]
    axes[0].boxplot(boxes)
    axes[0].set_xticks(range(1, len(rows) + 1), labels, fontsize=6)
    axes[0].set_ylabel("ms (round medians, p50, p90)")
    positions = list(range(len(rows)))
    _speedup_bars(axes[1], [x - 0.2 for x in positions], rows)
    if macs_ideal:
        axes[1].bar([x + 0.2 for x in positions], [macs_ideal.get(Path(r["model"]).stem, 0) for r in rows], width=0.4,
                    label="MAC-ideal", color="#ff7f0e")  # not the measured bars' blue
    axes[1].set_xticks(positions, labels, fontsize=6)
    axes[1].set_ylabel("speedup vs the first model")
    axes[1].axhline(1.0, color="gray", linewidth=0.8)
    axes[1].legend(fontsize=7)
    return _save(figure, folder, name)


def training(curves: dict[str, list[dict[str, Any]]], folder: Path, name: str = "training") -> Path:
    """Loss and training accuracy per epoch from each run's metrics.jsonl."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    for label, epochs in curves.items():
        xs = [row["epoch"] for row in epochs]
        axes[0].plot(xs, [row.get("loss") for row in epochs], marker="o", label=label)
        axes[1].plot(xs, [row.get("train_accuracy") for row in epochs], marker="o", label=label)
    axes[0].set_ylabel("loss")
    axes[1].set_ylabel("training accuracy")
    for axis in axes:
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return _save(figure, folder, name)


def roc(rows: list[dict[str, Any]], folder: Path, name: str = "roc") -> Path:
    """TAR against FAR on a log FAR axis, one curve per ROC row (``label`` and ``curve``, a list
    of [far, tar] fractions; FAR 0 points are left out of the log axis); cross-model rows dashed."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5.6, 3.8))
    for row in rows:
        points = [(far, tar) for far, tar in row["curve"] if far > 0]
        axis.plot([far for far, _ in points], [tar for _, tar in points], linestyle="--" if row.get("cross") else "-",
                  label=row["label"])
    axis.set_xscale("log")
    # plain-text decade labels (1e-06 ... 1): text.parse_math is off, so the default "$10^{-6}$" would print raw
    axis.xaxis.set_major_formatter(plt.FuncFormatter(lambda value, _: f"{value:g}"))
    axis.xaxis.set_minor_formatter(plt.NullFormatter())
    axis.set_xlabel("false accept rate (FAR)")
    axis.set_ylabel("true accept rate (TAR)")
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=6)
    return _save(figure, folder, name)
