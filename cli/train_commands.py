"""Commands that train and measure accuracy: finetune, eval."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from foadx_cli import render
from foadx_cli.app import app, handles_errors
from foadx_cli.options import (
    DeviceOption,
    ForceOption,
    JsonOption,
    ModelArgument,
    ModelOptions,
    QuietOption,
    ReportOption,
    SeedOption,
    finite,
    prepare_report,
    takes_model_options,
)

TaskOption = Annotated[Optional[str], typer.Option(help="classify (top-1) or face (margin head / verification); default: what the data holds (.rec/.bin/pairs.txt: face).")]
ValSplitOption = Annotated[Optional[float], typer.Option(help="Image folder without train/ and val/: hold out this stratified, seeded fraction (recorded in the artifact).")]


@app.command("finetune")
@handles_errors
@takes_model_options
def finetune_command(
    model: ModelArgument,
    data: Annotated[str, typer.Option(help="demo, CIFAR batches, class folders (train/ val/, or --val-split), an insightface folder (train.rec) or a .rec.")],
    out: Annotated[Path, typer.Option(help="Folder: plan.json + weights.pt, checkpoint.pt, metrics.jsonl; created if missing.")],
    task: TaskOption = None,
    val_split: ValSplitOption = None,
    epochs: Annotated[int, typer.Option(help="Epochs.")] = 1,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 0.05,
    batch_size: Annotated[int, typer.Option(help="Batch size per process.")] = 64,
    schedule: Annotated[str, typer.Option(help="cosine, or step (x0.1 at 50% and 75%).")] = "cosine",
    optimizer: Annotated[str, typer.Option(help="sgd (Nesterov, momentum 0.9) or adamw.")] = "sgd",
    weight_decay: Annotated[Optional[float], typer.Option(help="Base decay; 10x after the GDConv, none on BN/bias/PReLU (default 4e-5 face, 5e-4 classify).")] = None,
    head: Annotated[str, typer.Option(help="Face task: arcface or cosface.")] = "arcface",
    margin: Annotated[Optional[float], typer.Option(help="Margin m (default 0.5 arcface, 0.35 cosface).")] = None,
    scale: Annotated[float, typer.Option(help="Scale s of the margin head.")] = 64.0,
    margin_warmup_epochs: Annotated[int, typer.Option(help="Ramp the margin up over this many epochs.")] = 0,
    distill_from: Annotated[Optional[str], typer.Option(help="Teacher MODEL (usually the unpruned one) for distillation.")] = None,
    amp: Annotated[bool, typer.Option(help="Mixed precision (fp16 on CUDA, bf16 on CPU).")] = False,
    channels_last: Annotated[bool, typer.Option(help="channels-last memory format.")] = False,
    flip: Annotated[bool, typer.Option(help="Random horizontal flips.")] = True,
    workers: Annotated[int, typer.Option(help="DataLoader worker processes.")] = 0,
    steps_per_epoch: Annotated[Optional[int], typer.Option(help="Cap steps per epoch (smoke runs).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/checkpoint.pt, with the settings it was written with.")] = False,
    override: Annotated[bool, typer.Option(help="With --resume: continue with settings that differ from the checkpoint's (recorded).")] = False,
    eval_data: Annotated[Optional[str], typer.Option(help="Evaluate after each epoch on this (test split / pairs).")] = None,
    device: DeviceOption = "auto",
    seed: SeedOption = 0,
    force: ForceOption = False,
    report: ReportOption = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
    model_options: ModelOptions = ModelOptions(),
) -> None:
    """Fine-tune MODEL and write it as an artifact.

    Also runs under torchrun (DDP: NCCL on GPUs, gloo on CPUs).
    """
    from foadx.atomic import write_json
    from foadx.data.labeled import open_labeled
    from foadx.data.layout import data_identity, describe_data, resolve_task
    from foadx.train import FinetuneConfig
    from foadx.train.distributed import Distributed
    from foadx.workflow import check_finetune_output, finetune_to_artifact

    for name, value in (("--lr", lr), ("--scale", scale), ("--margin", margin), ("--weight-decay", weight_decay),
                        ("--val-split", val_split)):
        finite(value, name)
    task = resolve_task(describe_data(data), task)
    config = FinetuneConfig(
        task=task, epochs=epochs, lr=lr, batch_size=batch_size, schedule=schedule, optimizer=optimizer,
        weight_decay=weight_decay, head=head, margin=margin, scale=scale, margin_warmup_epochs=margin_warmup_epochs,
        amp=amp, channels_last=channels_last, flip=flip, seed=seed, workers=workers, steps_per_epoch=steps_per_epoch,
    )
    config.validate()
    check_finetune_output(out, resume=resume, force=force)
    prepare_report(report)
    network = model_options.resolve(model, seed).module()
    teacher = ModelOptions(trust_code=model_options.trust_code).resolve(distill_from).module().eval() if distill_from else None
    training_data = open_labeled(data, "train", task, val_split=val_split, seed=seed)
    render.notes(training_data.notes)
    evaluate = _epoch_evaluator(eval_data, task) if eval_data else None
    record = {"data": data, "from": model,
              "training_data": {"source": data_identity(data), "split": training_data.split}}
    with render.training_progress(enabled=not quiet and not as_json) as advance:
        history = finetune_to_artifact(
            network, training_data, out, config, record, resume=resume, force=force,
            override=override, teacher=teacher, evaluate=evaluate, progress=advance, device=device,
        )
    processes = Distributed.from_environment(device)
    if processes.is_main:
        if report is not None:
            write_json(report, {"out": str(out), "epochs": history})
        if as_json:
            typer.echo(json.dumps(history, indent=2))
        elif not quiet:
            render.training_table(history, out)
    processes.close()


def _epoch_evaluator(eval_data: str, task: str):
    from foadx.evaluate.runner import evaluate_model

    return lambda network: evaluate_model(network, eval_data, task).summary()


@app.command("eval")
@handles_errors
@takes_model_options
def eval_command(
    model: ModelArgument,
    data: Annotated[str, typer.Option(help="classify: test split (demo, CIFAR, folders); face: demo, a .bin, an LFW folder or an insightface folder (every *.bin).")],
    task: TaskOption = None,
    backend: Annotated[Optional[str], typer.Option(help="An ONNX file: ort-cpu (default) or openvino.")] = None,
    val_split: ValSplitOption = None,
    allow_train_overlap: Annotated[bool, typer.Option(help="Evaluate on an unsplit folder the model was fine-tuned on (scores memory).")] = False,
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = 128,
    far: Annotated[float, typer.Option(help="Face: report TAR at this FAR.")] = 1e-3,
    seed: SeedOption = 0,
    report: ReportOption = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
    model_options: ModelOptions = ModelOptions(),
) -> None:
    """Top-1 (classify) or 10-fold face verification with TAR@FAR, one row per set (face).

    An ONNX file runs in onnxruntime (or OpenVINO) with the preprocessing its metadata records.
    """
    from foadx.atomic import write_json
    from foadx.evaluate.runner import evaluate_model

    finite(far, "--far")
    finite(val_split, "--val-split")
    prepare_report(report)
    ref = model_options.resolve(model, seed)
    result = evaluate_model(ref, data, task, batch_size=batch_size, far_target=far, backend=backend,
                            val_split=val_split, seed=seed, allow_train_overlap=allow_train_overlap)
    summary = {"kind": "foadx.eval", "model": model, "data": data, "task": result.task, **result.to_json()}
    if report is not None:
        write_json(report, summary)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    elif not quiet:
        for line in result.lines():
            typer.echo(line)
