"""Terminal rendering for the CLI: rich tables, the progress bar, small option readers."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from foadx.errors import BadInputError

# Piped output (CI logs, files) gets wide tables instead of rich's 80-column default.
stdout = Console(width=None if sys.stdout.isatty() else 160)
stderr = Console(stderr=True)


MAX_RATIOS_BYTES = 1024 * 1024  # one ratio per group: a 10,000-group network's file is ~0.3 MB


def read_ratios(path: Path) -> dict[str, float]:
    from foadx.untrusted import read_json

    ratios = read_json(path, "--ratios", MAX_RATIOS_BYTES)
    if not isinstance(ratios, dict):
        raise BadInputError(f"--ratios {path} must be a JSON object: group name -> ratio")
    return ratios


class _LineProgress:
    """Progress where stderr is not a terminal (CI logs, pipes): one line per stage every few
    seconds, and a heartbeat line when a step reports nothing for that long, so a long step is
    visibly alive without flooding the log."""

    interval_s = 5.0

    def __init__(self, label: str) -> None:
        self.last: dict[str, float] = {}
        self.started = self.printed = time.monotonic()
        self.current = label
        self.lock = threading.Lock()
        self.stopped = threading.Event()

    def update(self, stage: str, done: int, total: int | None, detail: str = "") -> None:
        now = time.monotonic()
        count = f"{done}/{total}" if total is not None else str(done)
        with self.lock:
            self.current = f"{stage} {count}{detail}"
            finished = total is not None and done >= total
            if now - self.last.get(stage, self.started - self.interval_s) < self.interval_s and not finished:
                return
            self.last[stage] = now
            self._print(now, self.current)

    def _print(self, now: float, text: str) -> None:
        self.printed = now
        print(f"foadx: {text} ({now - self.started:.0f} s)", file=sys.stderr, flush=True)

    def heartbeat(self) -> None:
        """Runs in a daemon thread until ``stopped``: a line whenever none came for an interval."""
        while not self.stopped.wait(self.interval_s / 5):
            now = time.monotonic()
            with self.lock:
                if now - self.printed >= self.interval_s:
                    self._print(now, f"{self.current}, still working")


@contextmanager
def _line_progress(label: str) -> Iterator[_LineProgress]:
    """Line progress with its heartbeat thread running, stopped on exit."""
    lines = _LineProgress(label)
    beat = threading.Thread(target=lines.heartbeat, daemon=True)
    beat.start()
    try:
        yield lines
    finally:
        lines.stopped.set()
        beat.join()


@contextmanager
def staged_progress(enabled: bool) -> Iterator[Callable[[str, int, int | None], None] | None]:
    """Yields the library's progress hook ``(stage, done, total)``: bars with a known total on a
    terminal, periodic lines elsewhere."""
    if not enabled:
        yield None
        return
    if not stderr.is_terminal:
        with _line_progress("working") as lines:
            yield lines.update
        return
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=stderr, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def advance(stage: str, done: int, total: int | None) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield advance


@contextmanager
def progress(label: str, enabled: bool) -> Iterator[Callable[[int, int | None], None] | None]:
    """One stage's progress; yields the hook ``(done, total)``."""
    with staged_progress(enabled) as advance:
        yield None if advance is None else (lambda done, total: advance(label, done, total))


def _millions(value: int) -> str:
    return f"{value / 1e6:,.3f}M"


def models_table(rows: list[dict[str, Any]]) -> None:
    table = Table(title="foadx model zoo")
    for column in ("name", "input", "description"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["name"], "x".join(map(str, row["input_size"])), row["description"])
    table.caption = "also: torchvision:NAME, pkg.module:function, path/file.py:function"
    stdout.print(table)


def inspect_table(info: dict[str, Any]) -> None:
    shape = "x".join(map(str, info["input"][1:]))
    if "groups" not in info:  # an ONNX file or an engine
        stdout.print(f"{info['model']}: {info['kind']}, input {info['input'][0]!r} N x {shape}, task {info['task']}")
        for key in ("opset", "outputs", "params", "file_bytes", "op_counts", "metadata", "sidecar"):
            if key in info:
                stdout.print(f"  {key}: {info[key]}")
        return
    title = f"{info['model']} ({info['kind']}, input {shape}): {_millions(info['params'])} params, {_millions(info['macs'])} MACs"
    table = Table(title=title)
    for column in ("group", "channels", "kind", "pruned by default"):
        table.add_column(column, justify="right" if column == "channels" else "left")
    for group in info["groups"]:
        kind = "unsupported: " + group["note"] if group["note"] else ("coupled" if group["coupled"] else "decoupled")
        table.add_row(group["name"], str(group["channels"]), kind, "yes" if group["default"] else "no")
    table.caption = f"never pruned (output): {', '.join(info['output_layers'])}"
    if info.get("pruned_groups"):
        table.caption += f"; already pruned by {info['criterion']}: {len(info['pruned_groups'])} groups"
    stdout.print(table)


def prune_report(report: dict[str, Any]) -> None:
    table = Table(title=f"pruned with {report['criterion']}")
    for column in ("group", "before", "after", "kept"):
        table.add_column(column, justify="left" if column == "group" else "right")
    for group in report["groups"]:
        if not group["pruned"]:
            continue
        table.add_row(group["name"], str(group["before"]), str(group["after"]),
                      f"{group['after'] / group['before']:.0%}")
    stdout.print(table)
    totals = Table(show_header=True)
    for column in ("", "before", "after", "reduction"):
        totals.add_column(column, justify="right")
    for key, label in (("params", "params"), ("macs", "MACs"), ("weights_bytes", "weights bytes")):
        entry = report[key]
        totals.add_row(label, f"{entry['before']:,}", f"{entry['after']:,}", f"{entry['reduction']:.1%}")
    stdout.print(totals)
    details = []
    if report["t"] is not None:
        details.append(f"t = {report['t']}, s = {report['s']:.6g}")
    latency = report.get("latency")
    if latency:  # the widths are the table's legal ones; the final prune call itself rounds nothing
        from foadx.latency import format_ms

        for target in latency["targets"]:
            low, high = target["interval_ms"]
            details.append(f"{target['backend']}: {format_ms(target['measured_ms'])} ms measured [{format_ms(low)}, {format_ms(high)}, "
                           f"{target['interval']}] for a {format_ms(target['target_ms'])} ms target ({len(target['rounds'])} "
                           f"round(s), {target['verdict']}); widths in steps of {latency['round_to']}")
    else:
        details.append(f"round_to = {report['round_to']}")
    if report["calibration_images"]:
        details.append(f"{report['calibration_images']} calibration images")
    if report["bn_recalibration_images"]:
        details.append(f"BN re-estimated on {report['bn_recalibration_images']} images")
    details.append(f"weights.pt {report['weights_bytes']['file']:,} bytes -> {report['out']}")
    stdout.print("; ".join(details))


@contextmanager
def status(label: str, enabled: bool) -> Iterator[None]:
    """A spinner on stderr for work without a countable total (export, verification); where
    stderr is not a terminal, a line every few seconds instead."""
    if not enabled:
        yield
        return
    if not stderr.is_terminal:
        with _line_progress(label):
            yield
        return
    with stderr.status(label):
        yield


def export_summary(result: Any) -> None:
    ops = ", ".join(f"{op} {count}" for op, count in sorted(result.op_counts.items(), key=lambda item: -item[1]))
    stdout.print(
        f"wrote {result.path} ({result.file_bytes:,} bytes): opset {result.opset} via the {result.exporter} "
        f"exporter, batch {result.batch}, PReLU rewrite {result.metadata['prelu_rewrite']} "
        f"({result.prelu_rewritten} nodes)"
    )
    stdout.print(f"graph: {ops}")
    if result.parity is not None:
        parity_table(result.parity.to_json())


def parity_table(report: dict[str, Any]) -> None:
    runtime = report.get("runtime", {})
    ran = f"{runtime.get('backend', 'ort-cpu')} {runtime.get('inference_precision') or runtime.get('precision', 'fp32')}"
    table = Table(title=f"parity: {ran} vs torch fp32 (atol={report['atol']:g}, rtol={report['rtol']:g})")
    columns = ("inputs", "batch", "output", "RMS ref", "max |ref|", "max abs", "err/RMS", "min sample cos",
               "agree", "mismatches", "ok")
    for column in columns:
        table.add_column(column, justify="left" if column in ("inputs", "output") else "right")
    for case in report["cases"]:
        agreement = "" if case["agreement_pct"] is None else f"{case['agreement_pct']:.0f}%"
        for output in case["outputs"]:
            table.add_row(case["inputs"], str(case["batch"]), output["name"], f"{output['rms_reference']:.2e}",
                          f"{output['max_abs_reference']:.2e}", f"{output['max_abs']:.2e}",
                          f"{output['scaled_error']:.2e}", f"{output['min_sample_cosine']:.7f}", agreement,
                          f"{output['mismatches']}/{output['elements']}", "yes" if output["passed"] else "[red]NO[/red]")
    stdout.print(table)
    for failure in report["failures"][:5]:
        stdout.print(f"[red]failed[/red]: {failure}")
    worst = report["worst"]
    stdout.print(
        f"parity {'passed' if report['parity_passed'] else '[red]FAILED[/red]'}; smallest passing tolerances: "
        f"atol {worst['smallest_passing_atol']:.3g} at rtol={report['rtol']:g}, "
        f"rtol {worst['smallest_passing_rtol']:.3g} at atol={report['atol']:g}"
    )
    checks = "; ".join(f"{check['name']}: {'ok' if check['passed'] else 'NO (' + check['detail'] + ')'}"
                       for check in report["checks"])
    stdout.print(f"deployability{' (strict)' if report['strict'] else ''}: {checks}")


def latency_table(report: dict[str, Any]) -> None:
    from foadx.report.markdown import row_speedup_text

    environment = report["environment"]
    machine = environment.get("source") or environment["cpu"]
    title = f"latency (ms) on {machine}" + (f" + {environment['gpu']}" if environment.get("gpu") else "")
    table = Table(title=title)
    for column in ("model", "backend", "batch", "mean", "p50", "p90", "p99", "median", "images/s", "speedup"):
        table.add_column(column, justify="left" if column in ("model", "backend") else "right")
    for result in report["results"]:
        latency = result["latency_ms"]
        cells = [f"{latency[key]:.3f}" if key in latency else "n/a" for key in ("mean", "p50", "p90", "p99")]
        table.add_row(result["model"], result["backend"], str(result["batch"]), *cells,
                      f"{result['median_of_rounds_ms']:.3f}", f"{result['throughput_ips']:,.1f}",
                      row_speedup_text(result))
    table.caption = ("speedup: the median of the per-round ratios, then its confidence interval in brackets; stated "
                     "as fact only when no verdict follows it (foadx report on the JSON report gives the rule)")
    stdout.print(table)
    gate = report.get("gate")
    if gate:
        verdict = "passed" if gate["passed"] else "[red]FAILED[/red]"
        changes = [row["change_pct"] for row in gate["rows"] if row["change_pct"] is not None]
        missing = sum(row["change_pct"] is None for row in gate["rows"])
        worst = f"worst change {max(changes):+.1f}%" if changes else "nothing compared"
        stdout.print(f"regression gate {verdict}: {worst} (allowed +{gate['max_regression_pct']:g}%)"
                     + (f"; {missing} configuration(s) missing" if missing else ""))


@contextmanager
def training_progress(enabled: bool) -> Iterator[Callable[[int, int, dict], None] | None]:
    """Per-epoch bars with loss, accuracy and images/s; yields the loop's hook."""
    if not enabled:
        yield None
        return
    if not stderr.is_terminal:
        with _line_progress("training") as lines:
            yield lambda done, total, info: lines.update(
                f"epoch {info['epoch']}", done, total, f", loss {info['loss']:.4f}, {info['img/s']:.0f} img/s")
        return
    columns = (TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]:.4f} acc {task.fields[acc]:.3f} {task.fields[rate]:.0f} img/s"),
               TimeElapsedColumn())
    with Progress(*columns, console=stderr, transient=True) as bar:
        tasks: dict[int, Any] = {}

        def advance(done: int, total: int, info: dict) -> None:
            epoch = info["epoch"]
            if epoch not in tasks:
                tasks[epoch] = bar.add_task("train", total=total, epoch=epoch, loss=0.0, acc=0.0, rate=0.0)
            bar.update(tasks[epoch], completed=done, loss=info["loss"], acc=info["acc"], rate=info["img/s"])

        yield advance


def training_table(history: list[dict[str, Any]], out: Any) -> None:
    table = Table(title=f"fine-tuning -> {out}")
    extra = sorted({key for record in history for key in record if key.startswith("eval_")})
    for column in ("epoch", "loss", "train acc", *extra, "img/s", "seconds"):
        table.add_column(column, justify="right")
    for record in history:
        cells = [str(record["epoch"]), f"{record['loss']:.4f}", f"{record['train_accuracy']:.4f}"]
        cells += [f"{record[key]:.4f}" if isinstance(record.get(key), float) else str(record.get(key)) for key in extra]
        cells += [f"{record['images_per_s']:.0f}", f"{record['seconds']:.1f}"]
        table.add_row(*cells)
    stdout.print(table)


def int8_summary(int8: dict[str, Any]) -> None:
    check, form = int8["vs_fp32"], int8["form"]
    agreement = f", task agreement {check['task_agreement_pct']:.1f}%" if check["task_agreement_pct"] is not None else ""
    stdout.print(
        f"int8 ({form['quant_format']}, {form['activations']} activations, for {int8['target']}): wrote {int8['path']} "
        f"({int8['calibration_images']} {int8['method']} calibration images); on {check['held_out_images']} held-out "
        f"images against the fp32 file: min per-sample cosine {check['min_sample_cosine']:.4f} (floor "
        f"{check['min_cosine']}), mean {check['mean_sample_cosine']:.4f}{agreement}"
    )


def random_weights_note(origin: str) -> list[str]:
    from foadx.provenance import RANDOM_WEIGHTS

    return [f"the model's weights are a {RANDOM_WEIGHTS}"] if origin == RANDOM_WEIGHTS else []


def notes(lines: Sequence[str]) -> None:
    """What the library left out or assumed, on stderr: 'foadx: warning: ...'."""
    for line in lines:
        typer.echo(f"foadx: warning: {line}", err=True)


def show(data: Any, *, as_json: bool, quiet: bool, table: Callable[[Any], None], report: Path | None = None) -> None:
    """A command's result, the one way every command shows it: written to ``report`` (JSON)
    when given; printed as JSON with ``--json``, else drawn by ``table`` unless ``--quiet``."""
    if report is not None:
        from foadx.atomic import write_json

        write_json(report, data)
    if as_json:
        typer.echo(json.dumps(data, indent=2))
    elif not quiet:
        table(data)
