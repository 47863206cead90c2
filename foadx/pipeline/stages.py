"""The stages of ``foadx run``, each an adapter that maps its section onto a task
(``foadx.tasks``): it reads the outputs of earlier stages (paths relative to the run folder),
writes its own into an empty staging folder, and returns its record. ``STAGES`` is the
registry, in running order; the runner (``foadx.pipeline.runner``) decides which ones run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from foadx.atomic import write_json
from foadx.pipeline import limits
from foadx.pipeline.evaluation import eval_stage
from foadx.pipeline.records import ANY, FLAG, NUMBER, PATH, TEXT, UPSTREAM, ListOf, MapOf, Optional
from foadx.pipeline.report import write_pipeline_report
from foadx.pipeline.stage import UNPRUNED, Record, Stage, StageContext, StageMissed
from foadx.pipeline.variants import base_ref, final_models, load_variant, unpruned_model, variant_model
from foadx.report.markdown import row_speedup_text
from foadx.report.speedup import speedup_text
from foadx.resolve import resolve_model


def _accuracy(context: StageContext, model: nn.Module) -> dict[str, float]:
    """Held-out accuracy on [data] (its test split, or the held-out part of an unsplit folder)."""
    from foadx.evaluate.runner import evaluate_model

    data = context.settings("data")
    return evaluate_model(model, data["source"], data["task"], val_split=data["val_split"]).summary()


def finetune_variant(context: StageContext, section: str, model: nn.Module, out: Path, origin: str) -> nn.Module:
    """Fine-tunes ``model`` on [data] with ``section``'s schedule into the artifact ``out``;
    returns the model as written."""
    from foadx.tasks.finetune import TrainingData, prepare_finetune
    from foadx.train import FinetuneConfig

    settings, data = context.settings(section), context.settings("data")
    config = FinetuneConfig(epochs=settings["epochs"], lr=settings["lr"], batch_size=settings["batch_size"],
                            flip=settings["flip"], seed=context.settings("model")["seed"],
                            steps_per_epoch=settings["steps_per_epoch"])
    job = prepare_finetune(model, TrainingData(data["source"], data["task"], data["val_split"]), out, config,
                           origin=origin)
    job.run()
    return resolve_model(str(out)).module()


def train_stage(context: StageContext) -> Record:
    """Fine-tunes the unpruned model: the base every criterion prunes."""
    base = base_ref(context.pipeline).module()
    model = finetune_variant(context, "train", base, context.folder / UNPRUNED, context.settings("model")["spec"])
    return {"models": {UNPRUNED: f"train/{UNPRUNED}"}, "accuracy": {UNPRUNED: _accuracy(context, model)},
            "metrics": {UNPRUNED: f"train/{UNPRUNED}/metrics.jsonl"}}


def _prune_request(context: StageContext, criterion: str) -> Any:
    from foadx.tasks.prune import Calibration, ChannelBudget, LatencyBudget, PruneRequest, PruneScope

    settings, data = context.settings("prune"), context.settings("data")
    budget: ChannelBudget | LatencyBudget
    if settings["latency_target"] is not None:
        budget = LatencyBudget(settings["latency_target"], settings["backend"], allocation=settings["allocation"],
                               round_to=settings["round_to"])
    else:
        step = {} if settings["round_to"] is None else {"round_to": settings["round_to"]}
        budget = ChannelBudget(ratio=settings["ratio"], flops_target=settings["flops_target"],
                               params_target=settings["params_target"], **step)
    scope = PruneScope(settings["include_coupled"], (), settings["recalibrate_bn"])
    return PruneRequest(budget, criterion, scope,
                        Calibration(data["source"], data["images"], seed=context.settings("model")["seed"]))


def prune_stage(context: StageContext) -> Record:
    """Prunes the base once per criterion at the [prune] budget (a latency target included).

    Raises:
        StageMissed: a latency target missed for some criterion, after every criterion was
            pruned; each one's best plan is in the record and kept in the stage folder (exit 4).
    """
    from foadx.latency.rounds import LatencyTargetMissed
    from foadx.tasks.prune import calibration_batches, prune_model

    base = unpruned_model(context.pipeline, context.inputs, context.run).eval()
    criteria = context.settings("prune")["criteria"]
    images = calibration_batches(base, _prune_request(context, criteria[0]).calibration)  # read once, for every criterion
    record: Record = {"models": {}, "accuracy": {}, "macs": {}, "params": {}, "latency": {}}
    misses = []
    for criterion in criteria:
        try:
            result = prune_model(base, _prune_request(context, criterion), images=images)
        except LatencyTargetMissed as missed:  # its best plan is kept, marked missed
            result = missed.result
            misses.append(f"{criterion}: {missed}; its best plan is kept in {context.run / 'prune' / criterion}")
        if "latency" in result.report:
            record["latency"][criterion] = result.report["latency"]
        result.save(context.folder / criterion)
        record["models"][criterion] = f"prune/{criterion}"
        record["accuracy"][criterion] = _accuracy(context, result.model)
        record["macs"][criterion] = result.report["macs"]
        record["params"][criterion] = result.report["params"]
    trained = context.inputs.get("train", {}).get("accuracy", {}).get(UNPRUNED)
    record["accuracy"][UNPRUNED] = trained or _accuracy(context, base)
    if misses:
        raise StageMissed(" | ".join(misses), record)
    return record


def finetune_stage(context: StageContext) -> Record:
    """Fine-tunes every pruned variant with the same schedule."""
    record: Record = {"models": {}, "accuracy": {}, "metrics": {}}
    for criterion, relative in context.inputs["prune"]["models"].items():
        model = load_variant(context.pipeline, context.run, relative)
        tuned = finetune_variant(context, "finetune", model, context.folder / criterion, relative)
        record["models"][criterion] = f"finetune/{criterion}"
        record["metrics"][criterion] = f"finetune/{criterion}/metrics.jsonl"
        record["accuracy"][criterion] = _accuracy(context, tuned)
    return record


def export_stage(context: StageContext) -> Record:
    """Exports every variant to ONNX (verified in onnxruntime as it is written)."""
    from foadx.tasks.export import ExportRequest, deploy

    settings = context.settings("export")
    options = ExportRequest(settings["opset"], settings["target"], settings["batch"]).options()
    files, sizes = {}, {}
    for variant, relative in final_models(context.inputs).items():
        path = context.folder / f"{variant}.onnx"
        deploy(variant_model(context.pipeline, context.run, relative), path, options)
        files[variant], sizes[variant] = f"export/{variant}.onnx", path.stat().st_size
    return {"onnx": files, "bytes": sizes, "models": final_models(context.inputs)}


def verify_stage(context: StageContext) -> Record:
    """Checks every exported file against the model it came from, on real images; a failure
    stops the run (exit 4)."""
    from foadx.resolve import as_ref
    from foadx.tasks.export import model_images, verify_file
    from foadx.tasks.settings import ParitySettings

    settings, data = context.settings("verify"), context.settings("data")
    parity_settings = ParitySettings(atol=settings["atol"], rtol=settings["rtol"], min_cosine=settings["min_cosine"])
    record: Record = {"reports": {}, "passed": {}, "worst": {}}
    for variant, relative in context.inputs["export"]["models"].items():
        ref = as_ref(variant_model(context.pipeline, context.run, relative), variant)
        parity = verify_file(context.run / context.inputs["export"]["onnx"][variant], ref,
                             images=model_images(ref, data["source"], settings["images"]),
                             batches=tuple(settings["batches"]), parity=parity_settings)
        write_json(context.folder / f"{variant}.json", parity.to_json())
        record["reports"][variant], record["passed"][variant] = f"verify/{variant}.json", parity.passed
        record["worst"][variant] = parity.worst()
        parity.raise_if_failed()
    return record


def bench_stage(context: StageContext) -> Record:
    """Measures every exported file interleaved (speedups against the unpruned one) and gates
    on a baseline report when [bench] names one (exit 5 beyond ``max_regression``)."""
    from foadx.runtime.timing import TimingSettings
    from foadx.tasks.bench import BenchRequest, Gate, bench_models

    settings, exported = context.settings("bench"), context.inputs["export"]["onnx"]
    request = BenchRequest(tuple(settings["backends"]), tuple(settings["batches"]),
                           timing=TimingSettings(duration_s=settings["duration_s"], rounds=settings["rounds"]))
    gate = Gate(Path(settings["baseline"]), settings["max_regression"]) if settings["baseline"] else None
    outcome = bench_models([str(context.run / relative) for relative in exported.values()], request, gate=gate,
                           report=context.folder / "latency.json", markdown=context.folder / "latency.md")
    outcome.raise_if_failed()
    labels = {str(context.run / relative): variant for variant, relative in exported.items()}
    rows = [(f"{labels.get(row['model'], row['model'])} {row['backend']} b{row['batch']}", row)
            for row in outcome.report["results"]]
    return {"report": "bench/latency.json", "markdown": "bench/latency.md",
            "speedups": {name: row["speedup_vs_first"] for name, row in rows},
            "speedup_figures": {name: row_speedup_text(row) for name, row in rows if row["speedup_vs_first"]}}


def report_stage(context: StageContext) -> Record:
    """Figures, report.md and (unless [report] html = false) a self-contained report.html."""
    return write_pipeline_report(context.pipeline, context.inputs, context.run, context.folder)


def _accuracy_figure(record: Record) -> str:
    return ", ".join(f"{variant} {_first(values)}" for variant, values in record["accuracy"].items())


def _first(values: Any) -> str:
    if isinstance(values, dict) and values:
        name, value = next(iter(values.items()))
        return f"{name} {value:.4f}" if isinstance(value, float) else f"{name} {value}"
    return str(values)


def _eval_figure(record: Record) -> str:
    at = f"@{record['far']:g}"
    return ", ".join(f"{variant} {_first(values).replace('tar ', f'TAR{at} ', 1)}"
                     + (f" (cross {values['cross_tar']:.4f})" if isinstance(values.get("cross_tar"), float) else "")
                     for variant, values in record["summary"].items())


def _speedup_figure(record: Record) -> str:
    """Each speedup with its interval and verdict (a record of before intervals: the bare ratio, said so)."""
    if "speedup_figures" in record:
        return ", ".join(f"{name} {text}" for name, text in record["speedup_figures"].items())
    return ", ".join(f"{name} {speedup_text(value)}" for name, value in record["speedups"].items() if value)


def _parity_figure(record: Record) -> str:
    return ", ".join(f"{variant} {'pass' if ok else 'FAIL'}" for variant, ok in record["passed"].items())


def _size_figure(record: Record) -> str:
    return ", ".join(f"{variant} {size / 1e6:.2f} MB" for variant, size in record["bytes"].items())


def _files_figure(record: Record) -> str:
    return ", ".join(record.get("files", []))


_SCHEDULE = {"epochs": ((int,), 1), "batch_size": ((int,), 64), "flip": ((bool,), True),
             "steps_per_epoch": ((int,), None)}
_SCHEDULE_CHECKS = {"epochs": limits.count(10_000), "batch_size": limits.count(65536), "steps_per_epoch": limits.count(),
                    "lr": limits.between(0.0, 10.0, low_open=True)}
_ACCURACY = MapOf(MapOf(NUMBER))
_TRAINED = {"models": MapOf(PATH), "accuracy": _ACCURACY, "metrics": MapOf(PATH)}

STAGES: tuple[Stage, ...] = (
    Stage("train", {**_SCHEDULE, "lr": ((float,), 0.05)}, train_stage, key_figure=_accuracy_figure,
          checks=_SCHEDULE_CHECKS, record=_TRAINED),
    Stage("prune", {"criteria": ((list,), ["foad"]), "ratio": ((float,), None), "flops_target": ((float,), None),
                    "params_target": ((float,), None), "latency_target": ((str,), None),
                    "backend": ((str,), "ort-cpu"), "allocation": ((str,), "knapsack"), "round_to": ((int,), None),
                    "recalibrate_bn": ((bool,), True), "include_coupled": ((bool,), False)},
          prune_stage, reads=("train",), key_figure=_accuracy_figure,
          checks={"criteria": limits.each(limits.one_of(limits.criteria)), "ratio": limits.fraction(),
                  "flops_target": limits.fraction(), "params_target": limits.fraction(),
                  "latency_target": limits.latency_target, "backend": limits.one_of(limits.backends),
                  "allocation": limits.one_of(limits.allocations), "round_to": limits.count(4096)},
          record={"models": MapOf(PATH), "accuracy": _ACCURACY, "macs": MapOf(MapOf(NUMBER)),
                  "params": MapOf(MapOf(NUMBER)), "latency": MapOf(ANY)}),
    Stage("finetune", {**_SCHEDULE, "lr": ((float,), 0.02)}, finetune_stage, reads=("prune",), needs="prune",
          key_figure=_accuracy_figure, checks=_SCHEDULE_CHECKS, record=_TRAINED),
    Stage("eval", {"protocol": ((str,), "pairs"), "gallery_model": ((str,), None), "data": ((str,), None),
                   "far": ((float,), 1e-3)},
          eval_stage, reads=("train", "prune", "finetune"), key_figure=_eval_figure,
          checks={"protocol": limits.one_of(limits.protocols), "gallery_model": limits.text(),
                  "data": limits.text(), "far": limits.fraction()},
          record={"reports": MapOf(PATH), "summary": MapOf(MapOf(Optional(NUMBER))), "far": NUMBER},
          models=("gallery_model",), sources=("data",)),
    Stage("export", {"opset": ((int,), None), "batch": ((int, str), None), "target": ((str,), "ort-cpu")},
          export_stage, reads=("train", "prune", "finetune"), key_figure=_size_figure,
          checks={"opset": limits.export_opset, "batch": limits.export_batch,
                  "target": limits.one_of(limits.export_targets)},
          record={"onnx": MapOf(PATH), "bytes": MapOf(NUMBER), "models": MapOf(Optional(UPSTREAM))}),
    Stage("verify", {"images": ((int,), 16), "batches": ((list,), [1, 4]), "min_cosine": ((float,), None),
                     "atol": ((float,), None), "rtol": ((float,), None)},
          verify_stage, reads=("train", "prune", "finetune", "export"), needs="export", key_figure=_parity_figure,
          checks={"images": limits.count(), "batches": limits.batches,
                  "min_cosine": limits.between(-1.0, 1.0), "atol": limits.between(0.0, 1e6),
                  "rtol": limits.between(0.0, 1e6)},
          record={"reports": MapOf(PATH), "passed": MapOf(FLAG), "worst": MapOf(MapOf(ANY))}),
    Stage("bench", {"backends": ((list,), ["ort-cpu"]), "batches": ((list,), [1]), "duration_s": ((float,), 2.0),
                    "rounds": ((int,), 5), "baseline": ((str,), None), "max_regression": ((float,), 10.0)},
          bench_stage, reads=("export",), needs="export", key_figure=_speedup_figure,
          checks={"backends": limits.each(limits.one_of(limits.backends)), "batches": limits.batches,
                  "duration_s": limits.between(0.0, limits.MAX_SECONDS, low_open=True), "rounds": limits.count(1000),
                  "max_regression": limits.between(0.0, 1e6)},
          record={"report": PATH, "markdown": PATH, "speedups": MapOf(Optional(NUMBER)),
                  "speedup_figures": Optional(MapOf(TEXT))}, files=("baseline",)),
    Stage("report", {"html": ((bool,), True)}, report_stage,
          reads=("train", "prune", "finetune", "eval", "export", "verify", "bench"), key_figure=_files_figure,
          record={"markdown": PATH, "files": ListOf(PATH), "html": Optional(PATH)}),
)
STAGE_BY_NAME = {stage.name: stage for stage in STAGES}
