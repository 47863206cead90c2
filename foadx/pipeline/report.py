"""The pipeline's report stage: the trade-off of every variant (accuracy against measured latency
and MACs), the ROC curves of [eval], the FOAD plan's widths, one group's similarity matrix, the
latency spread and speedups, the training curves; as report.md and a self-contained report.html."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from foadx.atomic import write_text
from foadx.errors import BadInputError
from foadx.pipeline.config import Pipeline
from foadx.pipeline.stage import UNPRUNED, Record
from foadx.pipeline.variants import unpruned_model
from foadx.pruning.artifact import read_plan
from foadx.report import plots, read_report
from foadx.report.figures import roc_figure
from foadx.report.html import html_page
from foadx.report.markdown import row_speedup_text
from foadx.untrusted import check_depth, read_text


MAX_RUN_FILE_BYTES = 16 << 20  # a run's metrics and Markdown: kilobytes in practice

def _accuracy(inputs: dict[str, Record], variant: str) -> float | None:
    for stage in ("finetune", "prune", "train"):
        values = inputs.get(stage, {}).get("accuracy", {}).get(variant)
        if values:
            return next(iter(values.values()))
    return None


def _latencies(run: Path, inputs: dict[str, Record]) -> dict[str, dict[str, Any]]:
    """Each variant's first bench row (first backend, smallest batch)."""
    if "bench" not in inputs:
        return {}
    report = read_report(run / inputs["bench"]["report"])
    variants = {str(run / relative): variant for variant, relative in inputs["export"]["onnx"].items()}
    rows: dict[str, dict[str, Any]] = {}
    for row in sorted(report["results"], key=lambda r: r["batch"]):
        rows.setdefault(variants.get(row["model"], row["model"]), row)
    return rows


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """A fine-tune's metrics.jsonl: one object per epoch with a finite ``epoch`` number.

    Raises:
        BadInputError: oversized, not JSON lines, nested too deep, or an epoch without its number (exit 3).
    """
    epochs = []
    for number, line in enumerate(read_text(path, "metrics file", MAX_RUN_FILE_BYTES).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):
            raise BadInputError(f"{path}:{number} is not a JSON object line") from None
        if not isinstance(row, dict) or not isinstance(row.get("epoch"), (int, float)) or isinstance(row["epoch"], bool):
            raise BadInputError(f"{path}:{number}: an epoch's metrics need an object with a number 'epoch'")
        check_depth(row, f"{path}:{number}", limit=4)
        epochs.append(row)
    return epochs


def _latency_fields(row: dict[str, Any] | None) -> dict[str, Any]:
    """A variant's latency (ms, its bench row's median of rounds), that latency scaled by its
    speedup's interval ([ms x speedup / hi, ms x speedup / lo]: the ratio's relative uncertainty),
    the speedup's verdict and its text; None each where there is no row or no interval."""
    if row is None:
        return {"latency_ms": None, "latency_interval_ms": None, "speedup_verdict": None, "speedup_text": "n/a"}
    ms, speedup, interval = row["median_of_rounds_ms"], row["speedup_vs_first"], row.get("speedup_interval")
    return {"latency_ms": ms, "speedup_verdict": row.get("speedup_verdict"), "speedup_text": row_speedup_text(row),
            "latency_interval_ms": [ms * speedup / interval[1], ms * speedup / interval[0]] if interval else None}


def tradeoff_points(run: Path, inputs: dict[str, Record]) -> list[dict[str, Any]]:
    """Each variant with an accuracy: label, accuracy, MACs and ``_latency_fields`` of its bench row."""
    latencies = _latencies(run, inputs)
    macs = inputs.get("prune", {}).get("macs", {})
    before = next(iter(macs.values()))["before"] if macs else None
    variants = [UNPRUNED, *macs]
    return [{"label": variant, "criterion": variant, "accuracy": _accuracy(inputs, variant),
             **_latency_fields(latencies.get(variant)),
             "macs": before if variant == UNPRUNED else macs[variant]["after"]}
            for variant in variants if _accuracy(inputs, variant) is not None]


def _similarity_figure(pipeline: Pipeline, run: Path, inputs: dict[str, Record], figures: Path) -> Path | None:
    """The FOAD similarity of the group the foad plan cut most, recomputed on the base model."""
    import torch

    from foadx.data.calibration import images_for
    from foadx.provenance import provenance_of
    from foadx.pruning.api import group_scores, prunable_groups

    plan_folder = inputs.get("prune", {}).get("models", {}).get("foad")
    if plan_folder is None:
        return None
    chosen = max(read_plan(run / plan_folder).groups, key=lambda g: (g.channels - len(g.kept), -g.channels))
    base = unpruned_model(pipeline, inputs, run).eval()
    source = provenance_of(base).source
    images = images_for(source, pipeline.settings("data")["source"], 64)
    groups = [g for g in prunable_groups(base, torch.zeros(1, *source.input_chw),
                                         pipeline.settings("prune")["include_coupled"]) if g.name == chosen.name]
    if not groups or groups[0].channel_groups != 1:
        return None
    scores, _ = group_scores(base, images, groups, "foad")
    return plots.similarity(scores[chosen.name].numpy(), list(chosen.kept), figures,
                            title=f"{chosen.name}: kept {len(chosen.kept)} of {chosen.channels}")


def roc_rows(run: Path, inputs: dict[str, Record]) -> list[dict[str, Any]]:
    """The [eval] stage's ROC rows with each variant as the probe: the unpruned model's, each
    pruned variant's and each cross-model pair's (gallery model x variant), in the stage's order."""
    rows = []
    for relative in inputs.get("eval", {}).get("reports", {}).values():
        report = read_report(run / relative)
        rows += [row for row in report.get("roc", []) if row["probe"] == report["model"]]
    return rows


def _eval_table(inputs: dict[str, Record]) -> list[str]:
    """The [eval] stage's summary per variant as a Markdown table (no lines without [eval])."""
    summary = inputs.get("eval", {}).get("summary", {})
    keys = list(dict.fromkeys(key for values in summary.values() for key in values))
    if not keys:
        return []
    rows = [f"| {variant} | " + " | ".join("n/a" if values.get(key) is None else f"{values[key]:.4f}" for key in keys)
            + " |" for variant, values in summary.items()]
    at = f" (TAR at FAR {inputs['eval']['far']:g})" if "tar" in keys else ""
    return ["", f"## Evaluation{at}", "", f"| variant | {' | '.join(keys)} |", "|---" * (len(keys) + 1) + "|", *rows]


def _figures(pipeline: Pipeline, run: Path, inputs: dict[str, Record], folder: Path) -> dict[str, Path]:
    figures = folder / "figures"
    made: dict[str, Path] = roc_figure(roc_rows(run, inputs), figures,
                                       "ROC of the unpruned model, each variant and each cross-model pair")
    points = tradeoff_points(run, inputs)
    if len(points) > 1:
        made["accuracy against measured latency and MACs"] = plots.tradeoff(points, figures)
    if "foad" in inputs.get("prune", {}).get("models", {}):
        plan = read_plan(run / inputs["prune"]["models"]["foad"])
        groups = [{"name": g.name, "before": g.channels, "after": len(g.kept), "coupled": g.coupled}
                  for g in plan.groups]
        made["FOAD plan: channels kept per group"] = plots.widths(groups, figures, title="foad")
        similarity = _similarity_figure(pipeline, run, inputs, figures)
        if similarity is not None:
            made["FOAD similarity of the most-cut group (kept channels marked)"] = similarity
    if "bench" in inputs:
        report = read_report(run / inputs["bench"]["report"])
        macs = {p["label"]: p["macs"] for p in points if p["macs"]}
        ideal = {label: macs[UNPRUNED] / value for label, value in macs.items()} if UNPRUNED in macs else None
        made["latency spread and speedups (MAC-ideal beside)"] = plots.latency(report, figures, ideal)
    curves = {f"{stage} {variant}": read_metrics(run / path)
              for stage in ("train", "finetune") for variant, path in inputs.get(stage, {}).get("metrics", {}).items()
              if (run / path).is_file()}
    if curves:
        made["training curves"] = plots.training(curves, figures)
    return made


def report_markdown(pipeline: Pipeline, run: Path, inputs: dict[str, Record]) -> str:
    lines = [f"# foadx pipeline report: {pipeline.path.name}", "",
             "| variant | accuracy | latency ms | speedup [interval] | MACs (M) |", "|---|---|---|---|---|"]
    for point in tradeoff_points(run, inputs):
        latency = f"{point['latency_ms']:.3f}" if point["latency_ms"] else "n/a"
        macs = f"{point['macs'] / 1e6:.2f}" if point["macs"] else "n/a"
        lines.append(f"| {point['label']} | {point['accuracy']:.4f} | {latency} | {point['speedup_text']} | {macs} |")
    lines += _eval_table(inputs)
    if "bench" in inputs:
        lines += ["", read_text(run / inputs["bench"]["markdown"], "bench Markdown", MAX_RUN_FILE_BYTES)]
    return "\n".join(lines) + "\n"


def write_pipeline_report(pipeline: Pipeline, inputs: dict[str, Record], run: Path, folder: Path) -> Record:
    markdown = report_markdown(pipeline, run, inputs)
    write_text(folder / "report.md", markdown)
    figures = _figures(pipeline, run, inputs, folder)
    record: Record = {"markdown": "report/report.md",
                      "files": [f"report/figures/{path.name}" for path in figures.values()]}
    if pipeline.settings("report")["html"]:
        write_text(folder / "report.html", html_page(f"foadx: {pipeline.path.name}", markdown, figures))
        record["html"] = "report/report.html"
    return record
