"""The stages of ``foadx run``: each reads the outputs of earlier stages (paths relative to the
run's folder), writes its own into an empty staging folder, and returns its record (outputs and
key figures). The runner (``foadx.pipeline.runner``) decides which stages run.

A *variant* is one model going through the pipeline: ``unpruned`` and one per pruning criterion.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from foadx.atomic import write_json, write_text
from foadx.pipeline.config import Pipeline
from foadx.resolve import BuildOptions, ModelRef, resolve_model

Record = dict[str, Any]
Stage = Callable[[Pipeline, dict[str, Record], Path, Path], Record]
UNPRUNED = "unpruned"


def base_ref(pipeline: Pipeline) -> ModelRef:
    """The model the pipeline starts from, as [model] describes it."""
    model = pipeline.settings("model")
    size = model["input_size"]
    options = BuildOptions(weights=Path(model["weights"]) if model["weights"] else None,
                           input_size=(size, size) if size else None, model_args=dict(model["args"]),
                           seed=model["seed"], pretrained=model["pretrained"])
    return resolve_model(model["spec"], options)


def _load(run: Path, relative: str) -> nn.Module:
    return resolve_model(str(run / relative)).module()


def _accuracy(pipeline: Pipeline, model: nn.Module) -> dict[str, float]:
    """Held-out accuracy on [data] (its test split, or the held-out part of an unsplit folder)."""
    from foadx.evaluate.runner import evaluate_model

    data = pipeline.settings("data")
    return evaluate_model(model, data["source"], data["task"], val_split=data["val_split"]).summary()


def finetune_model(model: nn.Module, data: str, out: Path, *, epochs: int, lr: float, seed: int = 0,
                   task: str | None = None, val_split: float | None = None, batch_size: int = 64, flip: bool = True,
                   steps_per_epoch: int | None = None, origin: str = "") -> nn.Module:
    """Fine-tunes ``model`` on ``data``'s training split into the artifact folder ``out``;
    returns the fine-tuned model as written."""
    from foadx.data.labeled import open_labeled
    from foadx.data.layout import data_identity, describe_data, resolve_task
    from foadx.train import FinetuneConfig
    from foadx.workflow import finetune_to_artifact

    task = resolve_task(describe_data(data), task)
    config = FinetuneConfig(task=task, epochs=epochs, lr=lr, batch_size=batch_size, flip=flip, seed=seed,
                            steps_per_epoch=steps_per_epoch)
    config.validate()
    training = open_labeled(data, "train", task, val_split=val_split, seed=seed)
    record = {"data": data, "from": origin, "training_data": {"source": data_identity(data), "split": training.split}}
    finetune_to_artifact(model, training, out, config, record)
    return resolve_model(str(out)).module()


def _finetune(pipeline: Pipeline, section: str, model: nn.Module, out: Path, origin: str) -> nn.Module:
    settings, data = pipeline.settings(section), pipeline.settings("data")
    return finetune_model(model, data["source"], out, epochs=settings["epochs"], lr=settings["lr"],
                          seed=pipeline.settings("model")["seed"], task=data["task"], val_split=data["val_split"],
                          batch_size=settings["batch_size"], flip=settings["flip"],
                          steps_per_epoch=settings["steps_per_epoch"], origin=origin)


def train_stage(pipeline: Pipeline, inputs: dict[str, Record], run: Path, folder: Path) -> Record:
    """Fine-tunes the unpruned model: the base every criterion prunes."""
    model = _finetune(pipeline, "train", base_ref(pipeline).module(), folder / UNPRUNED, pipeline.settings("model")["spec"])
    return {"models": {UNPRUNED: f"train/{UNPRUNED}"}, "accuracy": {UNPRUNED: _accuracy(pipeline, model)},
            "metrics": {UNPRUNED: f"train/{UNPRUNED}/metrics.jsonl"}}


def unpruned_model(pipeline: Pipeline, inputs: dict[str, Record], run: Path) -> nn.Module:
    return _load(run, inputs["train"]["models"][UNPRUNED]) if "train" in inputs else base_ref(pipeline).module()


def prune_stage(pipeline: Pipeline, inputs: dict[str, Record], run: Path, folder: Path) -> Record:
    """Prunes the base once per criterion at the [prune] budget (a latency target included)."""
    import foadx
    from foadx.data import calibration_images
    from foadx.provenance import provenance_of

    settings, data = pipeline.settings("prune"), pipeline.settings("data")
    base = unpruned_model(pipeline, inputs, run).eval()
    source = provenance_of(base).source
    images = calibration_images(data["source"], data["images"], source.input_size, source.mean, source.std, 32,
                                pipeline.settings("model")["seed"])
    calibration = {**images.describe(), "data": data["source"], "seed": pipeline.settings("model")["seed"]}
    scope = {"include_coupled": settings["include_coupled"], "recalibrate_bn": settings["recalibrate_bn"],
             "calibration": calibration}
    record: Record = {"models": {}, "accuracy": {}, "macs": {}, "params": {}, "latency": {}}
    for criterion in settings["criteria"]:
        if settings["latency_target"] is not None:
            from foadx.latency import prune_to_latency

            result = prune_to_latency(base, images, settings["latency_target"], backend=settings["backend"],
                                      criterion=criterion, round_to=settings["round_to"],
                                      allocation=settings["allocation"], **scope)
            record["latency"][criterion] = result.report["latency"]
        else:
            result = foadx.prune(base, images, criterion=criterion, ratio=settings["ratio"],
                                 flops_target=settings["flops_target"], params_target=settings["params_target"],
                                 round_to=settings["round_to"] or 1, **scope)
        result.save(folder / criterion)
        record["models"][criterion] = f"prune/{criterion}"
        record["accuracy"][criterion] = _accuracy(pipeline, result.model)
        record["macs"][criterion] = result.report["macs"]
        record["params"][criterion] = result.report["params"]
    record["accuracy"][UNPRUNED] = inputs.get("train", {}).get("accuracy", {}).get(UNPRUNED) or _accuracy(pipeline, base)
    return record


def finetune_stage(pipeline: Pipeline, inputs: dict[str, Record], run: Path, folder: Path) -> Record:
    """Fine-tunes every pruned variant with the same schedule."""
    record: Record = {"models": {}, "accuracy": {}, "metrics": {}}
    for criterion, relative in inputs["prune"]["models"].items():
        tuned = _finetune(pipeline, "finetune", _load(run, relative), folder / criterion, relative)
        record["models"][criterion] = f"finetune/{criterion}"
        record["metrics"][criterion] = f"finetune/{criterion}/metrics.jsonl"
        record["accuracy"][criterion] = _accuracy(pipeline, tuned)
    return record


def final_models(pipeline: Pipeline, inputs: dict[str, Record]) -> dict[str, str | None]:
    """Each variant's last model: the fine-tuned one, else the pruned one; ``None`` for an
    unpruned model no stage wrote (built from [model])."""
    models: dict[str, str | None] = {UNPRUNED: inputs.get("train", {}).get("models", {}).get(UNPRUNED)}
    for stage in ("prune", "finetune"):
        models.update(inputs.get(stage, {}).get("models", {}))
    return models


def export_stage(pipeline: Pipeline, inputs: dict[str, Record], run: Path, folder: Path) -> Record:
    """Exports every variant to ONNX (verified in onnxruntime as it is written)."""
    from foadx.export import export_onnx

    settings = pipeline.settings("export")
    extra = {"opset": settings["opset"]} if settings["opset"] is not None else {}
    files, sizes = {}, {}
    for variant, relative in final_models(pipeline, inputs).items():
        model = _load(run, relative) if relative else base_ref(pipeline).module()
        path = folder / f"{variant}.onnx"
        export_onnx(model.eval(), path, batch=settings["batch"], target=settings["target"], **extra)
        files[variant], sizes[variant] = f"export/{variant}.onnx", path.stat().st_size
    return {"onnx": files, "bytes": sizes, "models": final_models(pipeline, inputs)}


def verify_stage(pipeline: Pipeline, inputs: dict[str, Record], run: Path, folder: Path) -> Record:
    """Checks every exported file against the model it came from, on real images; a failure
    stops the run (exit 4)."""
    from foadx.data import calibration_images
    from foadx.export import verify_onnx
    from foadx.provenance import provenance_of

    settings, data = pipeline.settings("verify"), pipeline.settings("data")
    overrides = {name: settings[name] for name in ("min_cosine", "atol", "rtol") if settings[name] is not None}
    record: Record = {"reports": {}, "passed": {}, "worst": {}}
    for variant, relative in inputs["export"]["models"].items():
        model = (_load(run, relative) if relative else base_ref(pipeline).module()).eval()
        source = provenance_of(model).source
        images = calibration_images(data["source"], settings["images"], source.input_size, source.mean, source.std,
                                    settings["images"], 0)
        parity = verify_onnx(run / inputs["export"]["onnx"][variant], model, batch_sizes=tuple(settings["batches"]),
                             images=torch.cat(list(images)).numpy(), **overrides)
        write_json(folder / f"{variant}.json", parity.to_json())
        record["reports"][variant], record["passed"][variant] = f"verify/{variant}.json", parity.passed
        record["worst"][variant] = parity.worst()
        parity.raise_if_failed()
    return record


def bench_stage(pipeline: Pipeline, inputs: dict[str, Record], run: Path, folder: Path) -> Record:
    """Measures every exported file interleaved (speedups against the unpruned one) and gates
    on a baseline report when [bench] names one (exit 5 beyond ``max_regression``)."""
    from foadx.bench import compare_to_baseline, measure_models
    from foadx.report import read_report, render_markdown

    settings = pipeline.settings("bench")
    files = [str(run / relative) for relative in inputs["export"]["onnx"].values()]
    report = measure_models(files, settings["backends"], settings["batches"],
                            timing=(200.0, settings["duration_s"], 10, settings["rounds"]))
    gate = None
    if settings["baseline"]:
        gate = compare_to_baseline(report, read_report(Path(settings["baseline"])), settings["max_regression"])
        report["gate"] = gate.to_json()
    write_json(folder / "latency.json", report)
    write_text(folder / "latency.md", render_markdown(report))
    if gate is not None:
        gate.raise_if_failed()
    labels = {str(run / relative): variant for variant, relative in inputs["export"]["onnx"].items()}
    speedups = {f"{labels.get(row['model'], row['model'])} {row['backend']} b{row['batch']}": row.get("speedup_vs_first")
                for row in report["results"]}
    return {"report": "bench/latency.json", "markdown": "bench/latency.md", "speedups": speedups}


def report_stage(pipeline: Pipeline, inputs: dict[str, Record], run: Path, folder: Path) -> Record:
    """Figures, report.md and (unless [report] html = false) a self-contained report.html."""
    from foadx.pipeline.report import write_pipeline_report

    return write_pipeline_report(pipeline, inputs, run, folder)


STAGE_FUNCTIONS: dict[str, Stage] = {
    "train": train_stage, "prune": prune_stage, "finetune": finetune_stage, "export": export_stage,
    "verify": verify_stage, "bench": bench_stage, "report": report_stage,
}
