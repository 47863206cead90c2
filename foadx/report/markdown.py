"""Markdown renderings of foadx reports, for pull requests, wikis and CI summaries: one function
per report kind (``report dict -> Markdown text``; the fields each reads are the kind's
``required`` fields in ``foadx.report.kinds``), and ``render_markdown`` for any kind."""

from __future__ import annotations

from typing import Any

from foadx.errors import BadInputError
from foadx.report.speedup import speedup_text


def markdown_text(text: str) -> str:
    """``text`` from a report (a label, a reason) as inert Markdown on one line: line breaks become
    spaces and ``<``/``>`` entities, so no row breaks and no HTML tag reaches a CI summary."""
    return " ".join(str(text).splitlines()).replace("<", "&lt;").replace(">", "&gt;")


def markdown_cell(text: str) -> str:
    """``markdown_text`` with ``|`` escaped, for a table cell."""
    return markdown_text(text).replace("|", "\\|")


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(map(markdown_cell, row)) + " |" for row in rows]
    return "\n".join(lines)


def _count(value: int | None, scale: float, unit: str) -> str:
    return "n/a" if value is None else f"{value / scale:,.2f}{unit}"


def _bytes(value: int | None) -> str:
    return "n/a" if value is None else f"{value:,}"


SPEEDUP_NOTE = (
    "Speedup: the median over rounds of the first model's round median divided by this model's (same backend, "
    "batch and round); [lo-hi]: the order-statistic confidence interval of that median (the min-max of the "
    "ratios for 5 to 7 rounds, 93.75% nominal at 5; Conover 1999, section 3.2). A ratio is stated as fact only "
    "when supported: 'no measurable difference' when the interval holds 1.0, 'unstable' when it spans more than "
    "a factor 1.5 or either model's p90 is over 3x its p50, 'too few rounds' below 5 rounds, 'unpaired' for "
    "measurements not interleaved (trtexec).")


def row_speedup_text(row: dict[str, Any]) -> str:
    """A latency result row's speedup with its interval and verdict (``speedup_text``)."""
    return speedup_text(row["speedup_vs_first"], row.get("speedup_interval"), row.get("speedup_verdict"))


def latency_markdown(report: dict[str, Any]) -> str:
    """A latency report: machine and settings, model sizes, latency statistics (ms) per model,
    backend and batch, speedups, and trtexec's stages where present."""
    environment, settings = report["environment"], report["settings"]
    libraries = ", ".join(f"{name} {version}" for name, version in environment["libraries"].items() if version)
    if environment.get("source"):
        machine = environment["source"]
        timing = f"Timed by trtexec with its own settings; precision {settings['precision']}."
    else:
        machine = f"{environment['cpu']} ({environment['cpu_count']} cores)"
        timing = (f"Warm-up {settings['warmup_ms']:g} ms, {settings['duration_s']:g} s over {settings['rounds']} "
                  f"interleaved rounds (at least {settings['min_iterations']} iterations), precision "
                  f"{settings['precision']}, threads {settings.get('threads') or 'default'}.")
    if environment.get("gpu"):
        machine += f", {environment['gpu']} (driver {environment.get('gpu_driver')})"
    parts = [
        "# foadx latency report",
        markdown_text(f"{report['created']} on {machine}; {libraries}."),
        timing,
        "## Models",
        _table(
            ["model", "params", "MACs", "weights bytes", "ONNX bytes"],
            [[m["label"], _count(m["params"], 1e6, "M"), _count(m["macs"], 1e6, "M"),
              _bytes(m["bytes"].get("weights")), _bytes(m["bytes"].get("onnx"))]
             for m in report["models"]],
        ),
        "## Latency (ms)",
    ]
    rows = []
    for result in report["results"]:
        latency = result["latency_ms"]
        cells = [f"{latency[key]:.3f}" if key in latency else "n/a" for key in ("mean", "std", "p50", "p90", "p95", "p99")]
        rows.append([result["model"], result["backend"], str(result["batch"]), *cells,
                     f"{result['median_of_rounds_ms']:.3f}", f"{result['throughput_ips']:,.1f}",
                     row_speedup_text(result)])
    header = ["model", "backend", "batch", "mean", "std", "p50", "p90", "p95", "p99", "median of rounds",
              "images/s", "speedup"]
    parts.append(_table(header, rows))
    stage_rows = [[r["model"], str(r["batch"]), stage, *(f"{values[k]:.4f}" if k in values else "n/a" for k in ("mean", "p50", "p90", "p99"))]
                  for r in report["results"] for stage, values in r.get("stages_ms", {}).items()]
    if stage_rows:
        parts.append("## trtexec stages (ms)")
        parts.append(_table(["model", "batch", "stage", "mean", "p50", "p90", "p99"], stage_rows))
    parts.append(SPEEDUP_NOTE)
    return "\n\n".join(parts) + "\n"


def parity_markdown(report: dict[str, Any]) -> str:
    """A parity report: verdict, tolerances, the smallest passing ones, every case's outputs,
    failures and deployability checks."""
    worst = report["worst"]
    parts = [
        f"# foadx parity report: {report['path']}",
        f"**{'passed' if report['passed'] else 'FAILED'}** with atol={report['atol']:g}, rtol={report['rtol']:g} "
        f"({_tolerance_words(report)}). Smallest passing tolerances: "
        f"atol {worst['smallest_passing_atol']:.3g} at rtol={report['rtol']:g}; "
        f"rtol {worst['smallest_passing_rtol']:.3g} at atol={report['atol']:g}.",
        _table(
            ["inputs", "batch", "output", "RMS of reference", "max abs", "max abs / RMS", "min sample cosine",
             "agreement", "mismatches", "passed"],
            [[case["inputs"], str(case["batch"]), o["name"], f"{o.get('rms_reference', float('nan')):.3g}",
              f"{o['max_abs']:.3g}", f"{o.get('scaled_error', float('nan')):.3g}",
              f"{o.get('min_sample_cosine', o['cosine']):.9f}",
              "n/a" if case.get("agreement_pct") is None else f"{case['agreement_pct']:.1f}%",
              f"{o['mismatches']}/{o['elements']}", "yes" if o["passed"] else "NO"]
             for case in report["cases"] for o in case["outputs"]],
        ),
        *(["## Failures", "\n".join(f"- {failure}" for failure in report["failures"])] if report.get("failures") else []),
        "## Deployability" + (" (strict)" if report["strict"] else " (reported; --strict makes them fail)"),
        _table(["check", "passed", "detail"],
               [[c["name"], "yes" if c["passed"] else "no", c["detail"]] for c in report["checks"]]),
    ]
    return "\n\n".join(parts) + "\n"


def _tolerance_words(report: dict[str, Any]) -> str:
    tolerances = report.get("tolerances") or {}
    words = [f"{tolerances.get('error_stat', 'elemwise')} check: fails only where both are exceeded"]
    if tolerances.get("min_cosine") is not None:
        words.append(f"every sample's cosine >= {tolerances['min_cosine']:g}")
    if tolerances.get("max_scaled_error") is not None:
        words.append(f"max error <= {tolerances['max_scaled_error']:g} x the output's RMS")
    return "; ".join(words)


def prune_markdown(report: dict[str, Any]) -> str:
    """A prune report: params, MACs and weight bytes before and after, widths per group, and
    the latency target's outcome where there was one."""
    parts = [
        f"# foadx prune report: {report['criterion']}",
        f"Plan {report['plan_digest'][:16]}, weights {report.get('weights', 'n/a')}, input "
        f"{report.get('input_shape', 'n/a')}, round_to {report.get('round_to', 'n/a')}, "
        f"{report.get('calibration_images', 'n/a')} calibration images.",
        _table(["", "before", "after", "reduction"],
               [[name, f"{report[key]['before']:,}", f"{report[key]['after']:,}", f"{report[key]['reduction']:.1%}"]
                for name, key in (("params", "params"), ("MACs", "macs"), ("weights bytes", "weights_bytes"))]),
        _table(["group", "before", "after", "coupled"],
               [[g["name"], str(g["before"]), str(g["after"]), "yes" if g["coupled"] else ""] for g in report["groups"]]),
    ]
    if report.get("latency"):
        latency = report["latency"]
        parts.append(f"Latency target {latency['target']} on {latency['backend']} (batch {latency['batch']}): "
                     f"{latency['measured_ms']:.3f} ms measured (p90 {latency['measured_p90_ms']:.3f}), "
                     f"{latency['predicted_ms']:.3f} predicted, unpruned {latency['unpruned_ms']:.3f} ms, "
                     f"{len(latency['rounds'])} round(s).")
    return "\n\n".join(parts) + "\n"


def eval_markdown(report: dict[str, Any]) -> str:
    """An eval summary: every numeric figure and each set's accuracy."""
    figures = {key: value for key, value in report.items()
               if isinstance(value, (int, float)) and not isinstance(value, bool)}
    rows = [[key, f"{value:.4f}" if isinstance(value, float) else str(value)] for key, value in figures.items()]
    rows += [[f"{name} accuracy", f"{values['accuracy']:.4f}"] for name, values in report.get("sets", {}).items()]
    parts = [f"# foadx eval: {report['model']} on {report['data']} ({report['task']}, {report['backend']})",
             _table(["figure", "value"], rows)]
    if report.get("roc"):
        targets = [point["far_target"] for point in report["roc"][0].get("points", [])]
        roc_rows = [[row["set"], row["gallery"], row["probe"], "yes" if row["cross"] else "no",
                     *[_figure(next((p.get("tar") for p in row.get("points", []) if p["far_target"] == far), None))
                       for far in targets], f"{row['eer']:.4f}", f"{row['auc']:.4f}"] for row in report["roc"]]
        parts += ["ROC (accept when score > threshold; n/a: too few impostor pairs for that FAR)",
                  _table(["set", "gallery", "probe", "cross", *[f"TAR@{far:g}" for far in targets], "EER", "AUC"],
                         roc_rows)]
    return "\n\n".join(parts) + "\n"


def sweep_markdown(report: dict[str, Any]) -> str:
    """A sweep: the unpruned model, then per criterion and budget its accuracy, latency (ms),
    speedup and MACs."""
    rows = [[p["criterion"], f"{p['budget']:g}", "yes" if p["reachable"] else f"no: {p.get('reason', '')}",
             _figure(p.get("accuracy")), _figure(p.get("latency_ms"), ".3f"),
             speedup_text(p.get("speedup"), p.get("speedup_interval"), p.get("speedup_verdict")),
             _count(p.get("macs"), 1e6, "M")]
            for p in report["points"]]
    return "\n\n".join([
        f"# foadx sweep: {report['model']} on {report['backend']} (batch {report['batch']})",
        (f"Unpruned: accuracy {_figure(report['unpruned']['accuracy'])}, {report['unpruned']['latency_ms']:.3f} ms, "
         f"{_count(report['unpruned']['macs'], 1e6, 'M')} MACs. Budget: {report.get('budget', 'n/a')}; fine-tune "
         f"epochs {report.get('finetune_epochs', 'n/a')}."),
        _table(["criterion", "budget", "reachable", report.get("accuracy_axis", "accuracy")[:32], "latency ms", "speedup",
                "MACs"], rows),
        ("Latency: each point timed beside the unpruned network (median of interleaved rounds), scaled to the "
         "unpruned network's reference latency. " + SPEEDUP_NOTE.replace("the first model", "the unpruned network")
         .replace("this model", "the point"))]) + "\n"


def pipeline_table(report: dict[str, Any]) -> str:
    """A pipeline run as one table (stage, status and why, key figure, file): the CI job summary
    ``foadx run`` writes as summary.md."""
    rows = [[s["stage"], f"{s['status']} ({s['reason']})", s.get("key_figure", ""), s.get("file", "")]
            for s in report["stages"]]
    return _table(["stage", "status", "key figure", "file"], rows) + "\n"


def pipeline_markdown(report: dict[str, Any]) -> str:
    """A pipeline run, as ``foadx report summary.json`` prints it: a title over ``pipeline_table``."""
    return "# foadx pipeline run\n\n" + pipeline_table(report)


def _figure(value: float | None, spec: str = ".4f", unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def render_markdown(report: dict[str, Any]) -> str:
    """Any report foadx writes, by its ``kind`` (the renderer ``foadx.report.kinds`` registers).

    Raises:
        BadInputError: the kind is not registered, or has no Markdown rendering.
    """
    from foadx.report.kinds import get_kind  # the registry imports the renderers above

    entry = get_kind(report.get("kind"))
    if entry.markdown is None:
        raise BadInputError(f"{entry.name} reports have no Markdown rendering")
    return entry.markdown(report)
