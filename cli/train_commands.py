"""Commands that train and measure accuracy: finetune, eval."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from foadx_cli import render
from foadx_cli.app import app, handles_errors
from foadx_cli.options import (
    takes_threads_option,
    DeviceOption,
    ForceOption,
    JsonOption,
    ModelArgument,
    ModelOptions,
    QuietOption,
    ReportOption,
    SeedOption,
    option_group,
    prepare_report,
    takes_model_options,
)

TaskOption = Annotated[Optional[str], typer.Option(help="classify (top-1) or face (margin head / verification); default: what the data holds (.rec/.bin/pairs.txt: face).")]
ValSplitOption = Annotated[Optional[float], typer.Option(help="Image folder without train/ and val/: hold out this stratified, seeded fraction (recorded in the artifact).")]


TRAINING_OPTIONS = (
    ("epochs", Annotated[int, typer.Option(help="Epochs.")], 1),
    ("lr", Annotated[float, typer.Option(help="Peak learning rate.")], 0.05),
    ("batch_size", Annotated[int, typer.Option(help="Batch size per process.")], 64),
    ("schedule", Annotated[str, typer.Option(help="cosine, or step (x0.1 at 50% and 75%).")], "cosine"),
    ("optimizer", Annotated[str, typer.Option(help="sgd (Nesterov, momentum 0.9) or adamw.")], "sgd"),
    ("weight_decay", Annotated[Optional[float], typer.Option(help="Base decay; 10x after the GDConv, none on BN/bias/PReLU (default 4e-5 face, 5e-4 classify).")], None),
    ("head", Annotated[str, typer.Option(help="Face task: arcface or cosface.")], "arcface"),
    ("margin", Annotated[Optional[float], typer.Option(help="Margin m (default 0.5 arcface, 0.35 cosface).")], None),
    ("scale", Annotated[float, typer.Option(help="Scale s of the margin head.")], 64.0),
    ("margin_warmup_epochs", Annotated[int, typer.Option(help="Ramp the margin up over this many epochs.")], 0),
    ("amp", Annotated[bool, typer.Option(help="Mixed precision (fp16 on CUDA, bf16 on CPU).")], False),
    ("channels_last", Annotated[bool, typer.Option(help="channels-last memory format.")], False),
    ("flip", Annotated[bool, typer.Option(help="Random horizontal flips.")], True),
    ("workers", Annotated[int, typer.Option(help="DataLoader worker processes.")], 0),
    ("steps_per_epoch", Annotated[Optional[int], typer.Option(help="Cap steps per epoch (smoke runs).")], None),
)
# the training schedule's options, handed to the command as one dict of FinetuneConfig fields
takes_training_options = option_group("training", dict, TRAINING_OPTIONS)


@app.command("finetune")
@handles_errors
@takes_threads_option
@takes_model_options
@takes_training_options
def finetune_command(
    model: ModelArgument,
    data: Annotated[str, typer.Option(help="demo, CIFAR batches, class folders (train/ val/, or --val-split), an insightface folder (train.rec) or a .rec.")],
    out: Annotated[Path, typer.Option(help="Folder: plan.json + weights.pt, checkpoint.pt, metrics.jsonl; created if missing.")],
    task: TaskOption = None,
    val_split: ValSplitOption = None,
    distill_from: Annotated[Optional[str], typer.Option(help="Teacher MODEL (usually the unpruned one) for distillation.")] = None,
    distill_weight: Annotated[Optional[float], typer.Option(help="Weight of the --distill-from loss (default 1; face: 1 - cosine lies in [0, 2] beside a margin loss near 10, so 10 or more to matter).")] = None,
    distill_temperature: Annotated[Optional[float], typer.Option(help="Classify: the --distill-from softmax temperature T (default 4).")] = None,
    compatible_with: Annotated[Optional[str], typer.Option(help="Face: keep the embeddings comparable with this earlier face fine-tune's (its folder): its frozen margin head also classifies them (backward-compatible training, Shen et al. CVPR 2020).")] = None,
    compatibility_weight: Annotated[float, typer.Option(help="Weight of the --compatible-with (BCT influence) loss.")] = 1.0,
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
    training: dict = {},  # noqa: B006 (filled by takes_training_options)
) -> None:
    """Fine-tune MODEL and write it as an artifact.

    Example:
      foadx finetune out/pruned --data demo --epochs 1 --out out/tuned

    Also runs under torchrun (DDP: NCCL on GPUs, gloo on CPUs).
    """
    from foadx.errors import BadInputError
    from foadx.tasks.finetune import Resume, TrainingData, epoch_evaluator, prepare_finetune
    from foadx.train import FinetuneConfig
    from foadx.train.distributed import Distributed

    distill = {name: value for name, value in (("distill_weight", distill_weight),
                                               ("distill_temperature", distill_temperature)) if value is not None}
    if distill and not distill_from:
        raise BadInputError(f"--{next(iter(distill)).replace('_', '-')} weighs the --distill-from loss: name a teacher")
    config = FinetuneConfig(**training, **distill, seed=seed, compatibility_weight=compatibility_weight)
    prepare_report(report)
    job = prepare_finetune(model_options.resolve(model, seed).module(), TrainingData(data, task, val_split), out,
                           config, origin=model, resume=Resume(resume, override), force=force,
                           compatible_with=compatible_with)
    render.notes(job.notes)
    teacher = ModelOptions(trust_code=model_options.trust_code).resolve(distill_from).module().eval() if distill_from else None
    evaluate = epoch_evaluator(eval_data, job.config.task) if eval_data else None
    with render.training_progress(enabled=not quiet and not as_json) as advance:
        history = job.run(teacher=teacher, evaluate=evaluate, progress=advance, device=device)
    processes = Distributed.from_environment(device)
    if processes.is_main:
        if report is not None:
            from foadx.atomic import write_json

            write_json(report, {"out": str(out), "epochs": history})
        render.show(history, as_json=as_json, quiet=quiet, table=lambda rows: render.training_table(rows, out))
    processes.close()


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
    far: Annotated[float, typer.Option(help="Face: the FAR the summary's TAR is at (a ROC row lists 1e-1..1e-6 too).")] = 1e-3,
    protocol: Annotated[str, typer.Option(help="Face: pairs (the listed pairs: 10-fold accuracy and a ROC) or all (a ROC over every pair of an identity-labelled set: demo 7-9, a folder per identity, a .rec).")] = "pairs",
    gallery_model: Annotated[Optional[str], typer.Option(help="Face: MODEL that embeds the gallery side of each pair (e.g. the unpruned teacher): adds its rows and cross-model rows, both directions pooled.")] = None,
    seed: SeedOption = 0,
    report: ReportOption = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
    model_options: ModelOptions = ModelOptions(),
) -> None:
    """Evaluate MODEL: top-1 (classify), or face verification (TAR at FAR 1e-1..1e-6, EER and AUC per set).

    Example:
      foadx eval out/tuned --data demo

    Face: --protocol all scores every pair; --gallery-model adds cross-model rows.
    An ONNX file runs in onnxruntime (or OpenVINO) with the preprocessing its metadata records.
    """
    from foadx.tasks.evaluate import EvalRequest, evaluate

    prepare_report(report)
    request = EvalRequest(data, task, backend, val_split, allow_train_overlap, batch_size, far, seed, protocol)
    gallery = ModelOptions(trust_code=model_options.trust_code).resolve(gallery_model) if gallery_model else None
    summary, result = evaluate(model_options.resolve(model, seed), request, gallery)
    render.show(summary, as_json=as_json, quiet=quiet, report=report,
                table=lambda _: typer.echo("\n".join(result.lines())))
