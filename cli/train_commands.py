"""Commands that train and measure accuracy: finetune, eval."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from foadx_cli import render
from foadx_cli.app import app, handles_errors
from foadx_cli.options import (
    InputSizeOption,
    JsonOption,
    ModelArgOption,
    ModelOrArtifactArgument,
    QuietOption,
    WeightsOption,
    check_output_path,
    load_module,
)


TaskOption = Annotated[str, typer.Option(help="classify (top-1) or face (margin head / verification).")]


@app.command("finetune")
@handles_errors
def finetune_command(
    model: ModelOrArtifactArgument,
    data: Annotated[str, typer.Option(help="demo, CIFAR batches, class folders (train/ val/) or insightface train.rec.")],
    out: Annotated[Path, typer.Option(help="Directory: plan.json + weights.pt, checkpoint.pt, metrics.jsonl.")],
    task: TaskOption = "classify",
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
    distill_from: Annotated[Optional[str], typer.Option(help="Teacher (usually the unpruned model) for distillation.")] = None,
    amp: Annotated[bool, typer.Option(help="Mixed precision (fp16 on CUDA, bf16 on CPU).")] = False,
    channels_last: Annotated[bool, typer.Option(help="channels-last memory format.")] = False,
    flip: Annotated[bool, typer.Option(help="Random horizontal flips.")] = True,
    seed: Annotated[int, typer.Option(help="Seed of data order and augmentation.")] = 0,
    workers: Annotated[int, typer.Option(help="DataLoader worker processes.")] = 0,
    steps_per_epoch: Annotated[Optional[int], typer.Option(help="Cap steps per epoch (smoke runs).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/checkpoint.pt.")] = False,
    eval_data: Annotated[Optional[str], typer.Option(help="Evaluate after each epoch on this (test split / pairs).")] = None,
    input_size: InputSizeOption = None,
    model_arg: ModelArgOption = None,
    weights: WeightsOption = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Fine-tune MODEL_OR_ARTIFACT; also runs under torchrun (DDP: NCCL on GPUs, gloo on CPUs)."""
    from dataclasses import asdict

    from foadx.data.labeled import open_labeled
    from foadx.prune import save_trained
    from foadx.train import FinetuneConfig, finetune

    config = FinetuneConfig(
        task=task, epochs=epochs, lr=lr, batch_size=batch_size, schedule=schedule, optimizer=optimizer,
        weight_decay=weight_decay, head=head, margin=margin, scale=scale, margin_warmup_epochs=margin_warmup_epochs,
        amp=amp, channels_last=channels_last, flip=flip, seed=seed, workers=workers, steps_per_epoch=steps_per_epoch,
    )
    config.validate()
    network = load_module(model, weights, None, input_size, model_arg, seed)
    teacher = load_module(distill_from, None, None, input_size, None).eval() if distill_from else None
    training_data = open_labeled(data, "train", task)
    evaluate = _epoch_evaluator(eval_data, task) if eval_data else None
    with render.training_progress(enabled=not quiet and not as_json) as advance:
        history = finetune(network, training_data, out, config, resume=resume, teacher=teacher,
                           evaluate=evaluate, progress=advance, device=device)
    from foadx.train.distributed import Distributed

    processes = Distributed.from_environment(device)
    if processes.is_main:
        network.to("cpu")
        save_trained(network, out, {"config": asdict(config), "data": data, "from": model, "epochs": history})
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
def eval_command(
    model: Annotated[str, typer.Argument(help="Pruned artifact, model spec, or an ONNX file (run in onnxruntime).")],
    data: Annotated[str, typer.Option(help="classify: test split (demo, CIFAR, folders); face: demo, a .bin or an LFW folder.")],
    task: TaskOption = "classify",
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = 128,
    far: Annotated[float, typer.Option(help="Face: report TAR at this FAR.")] = 1e-3,
    out: Annotated[Optional[Path], typer.Option(help="Write the result (JSON) here.")] = None,
    input_size: InputSizeOption = None,
    model_arg: ModelArgOption = None,
    weights: WeightsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Top-1 (classify) or 10-fold face verification with TAR@FAR (face)."""
    from foadx.atomic import write_json
    from foadx.evaluate.runner import evaluate_model

    if out is not None:
        check_output_path(out)
    target = Path(model) if model.endswith(".onnx") else load_module(model, weights, None, input_size, model_arg)
    result = evaluate_model(target, data, task, batch_size=batch_size, far_target=far)
    report = {"model": model, "data": data, "task": task, **result.to_json()}
    if out is not None:
        write_json(out, report)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        typer.echo(result.line())
