"""``finetune``: the training loop behind ``foadx finetune`` (single process or DDP).

Determinism: the data order and the flips of epoch e come from a generator seeded with
(seed, e), so an epoch is the same whether the run went straight through or resumed from the
checkpoint written after epoch e-1. Under ``torchrun`` every rank takes every world-size-th
sample of that order: the ranks' batches together are exactly the single-process batch, and
gradients are averaged by DistributedDataParallel (BN statistics stay per rank).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from foadx.data.labeled import LabeledImages
from foadx.data.transforms import prepare_batch, resize_uint8, writable
from foadx.errors import BadInputError, first_line
from foadx.outputs import flatten_outputs
from foadx.provenance import ModelSource, require_provenance
from foadx.train.checkpoint import CHECKPOINT_FILE, check_resumable, load_checkpoint, model_identity, save_checkpoint
from foadx.train.compat import check_old_classifier, influence_loss
from foadx.train.distributed import Distributed
from foadx.train.heads import MarginHead

METRICS_FILE = "metrics.jsonl"
"""The metrics file in ``out``: one JSON object per epoch, appended."""


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning settings. ``task`` "classify" trains logits with cross-entropy; "face" trains
    embeddings through a ``MarginHead`` (``head`` arcface, Deng et al. CVPR 2019, or cosface,
    with ``margin``/``scale``). ``lr`` is the base learning rate; ``weight_decay`` None takes 4e-5
    (face) or 5e-4 (classify), ten times that on the output layers and the head.
    ``distill_weight``/``distill_temperature`` weigh a distillation loss from a teacher, when one
    is given; ``compatibility_weight`` weighs BCT's influence loss (``foadx.train.compat``) when
    an old classifier is given. ``steps_per_epoch`` caps the batches per epoch (smoke runs).
    Checked by ``validate``.
    """

    task: str = "classify"  # or "face": a margin head over identities
    epochs: int = 1
    lr: float = 0.05
    batch_size: int = 64
    schedule: str = "cosine"  # or "step": x0.1 at 50% and 75% of the epochs
    optimizer: str = "sgd"  # or "adamw"
    momentum: float = 0.9
    weight_decay: float | None = None  # None: 4e-5 face (MobileFaceNet paper), 5e-4 classify
    head: str = "arcface"
    margin: float | None = None
    scale: float = 64.0
    margin_warmup_epochs: int = 0
    distill_weight: float = 1.0
    distill_temperature: float = 4.0
    compatibility_weight: float = 1.0
    amp: bool = False
    channels_last: bool = False
    flip: bool = True
    seed: int = 0
    workers: int = 0
    steps_per_epoch: int | None = None  # cap, for smoke runs

    def validate(self) -> None:
        """Checks the settings' ranges.

        Raises:
            BadInputError: the first setting out of range, named in the message and in its
                ``parameters`` (CLI exit code 3).
        """
        checks = [
            ("task", self.task in ("classify", "face"), f"must be classify or face, got {self.task!r}"),
            ("epochs", self.epochs >= 1, f"must be >= 1, got {self.epochs}"),
            ("lr", 0 < self.lr < 10, f"must be in (0, 10), got {self.lr}"),
            ("batch_size", self.batch_size >= 1, f"must be >= 1, got {self.batch_size}"),
            ("schedule", self.schedule in ("cosine", "step"), f"must be cosine or step, got {self.schedule!r}"),
            ("optimizer", self.optimizer in ("sgd", "adamw"), f"must be sgd or adamw, got {self.optimizer!r}"),
            ("weight_decay", self.weight_decay is None or 0 <= self.weight_decay < 1,
             f"must be in [0, 1), got {self.weight_decay}"),
            ("workers", self.workers >= 0, f"must be >= 0, got {self.workers}"),
            ("margin_warmup_epochs", self.margin_warmup_epochs >= 0, f"must be >= 0, got {self.margin_warmup_epochs}"),
            ("steps_per_epoch", self.steps_per_epoch is None or self.steps_per_epoch >= 1, "must be >= 1"),
            ("distill_weight", 0 <= self.distill_weight < 1e3, f"must be in [0, 1000), got {self.distill_weight}"),
            ("distill_temperature", 0 < self.distill_temperature <= 1e3,
             f"must be in (0, 1000], got {self.distill_temperature}"),
            ("compatibility_weight", 0 <= self.compatibility_weight < 1e3,
             f"must be in [0, 1000), got {self.compatibility_weight}"),
        ]
        for name, ok, message in checks:
            if not ok:
                raise BadInputError(f"{name} {message}", parameters=(name,))


class _Images(torch.utils.data.Dataset):
    """Decodes (in DataLoader workers) and resizes to the model's input; uint8 out."""

    def __init__(self, data: LabeledImages, input_size: tuple[int, int]) -> None:
        self.data, self.input_size = data, input_size

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        return torch.from_numpy(writable(resize_uint8(self.data.load(index), self.input_size))), int(self.data.labels[index])


def _parameter_groups(model: nn.Module, head: nn.Module | None, decay: float) -> list[dict[str, Any]]:
    """No decay on BN, biases and PReLU slopes; 10x on the layers after the global pooling /
    GDConv (the network's output layers) and the margin head; the base rate elsewhere — the
    MobileFaceNet paper's 4e-5 / 4e-4 split."""
    # the top-level modules holding the output layers (MobileFaceNet: "embedding" after "gdconv")
    head_modules = {name.split(".")[0] for name in getattr(model, "output_layers", lambda: [])()}
    groups: dict[str, list[nn.Parameter]] = {"none": [], "base": [], "head": []}
    for module_name, module in model.named_modules():
        for name, parameter in module.named_parameters(recurse=False):
            if isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.PReLU)) or name == "bias":
                groups["none"].append(parameter)
            elif module_name.split(".")[0] in head_modules:
                groups["head"].append(parameter)
            else:
                groups["base"].append(parameter)
    if head is not None:
        groups["head"] += list(head.parameters())
    rates = {"none": 0.0, "base": decay, "head": decay * 10}
    return [{"params": params, "weight_decay": rates[key], "name": key} for key, params in groups.items() if params]


def _schedule(optimizer: torch.optim.Optimizer, config: FinetuneConfig, steps_per_epoch: int):
    total = config.epochs * steps_per_epoch
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / total)))
    milestones = [int(total * 0.5), int(total * 0.75)]
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)


def _epoch_order(count: int, config: FinetuneConfig, epoch: int, dist: Distributed) -> tuple[list[int], torch.Generator]:
    generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
    order = torch.randperm(count, generator=generator).tolist()
    usable = (count // (config.batch_size * dist.world)) * config.batch_size * dist.world
    if usable == 0:
        raise BadInputError(f"{count} images cannot fill one batch of {config.batch_size} on {dist.world} process(es)")
    return order[:usable][dist.rank::dist.world], generator


@dataclass
class _Training:
    """Everything a run updates: the model (and its DDP wrapper), the margin head, the optimiser
    state, and the epochs done so far."""

    model: nn.Module
    trained: nn.Module
    head: MarginHead | None
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    steps_per_epoch: int
    history: list[dict[str, Any]]
    start_epoch: int = 0
    old_classifier: MarginHead | None = None  # BCT: the old model's frozen margin head

    def checkpoint(self, epoch: int, config: FinetuneConfig) -> dict[str, Any]:
        return {
            "epoch": epoch, "identity": model_identity(self.model), "model": self.model.state_dict(),
            "head": self.head.state_dict() if self.head is not None else {}, "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "config_json": json.dumps(asdict(config)), "history_json": json.dumps(self.history),
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        if self.head is not None:
            self.head.load_state_dict(state["head"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.start_epoch, self.history = int(state["epoch"]), json.loads(state["history_json"])


def _set_up(model: nn.Module, data: LabeledImages, config: FinetuneConfig, source: ModelSource,
            dist: Distributed, old_classifier: MarginHead | None = None) -> _Training:
    device = dist.device
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    head, width = None, check_trainable(model, source.input_chw, config.task, data.classes)
    if config.task == "face":
        head = MarginHead(width, data.classes, config.head, config.scale, config.margin).to(device)
        if old_classifier is not None:
            check_old_classifier(old_classifier, width)
            old_classifier = old_classifier.to(device)
    elif old_classifier is not None:
        raise BadInputError("backward-compatible training (an old classifier) needs the face task")
    decay = config.weight_decay if config.weight_decay is not None else (4e-5 if config.task == "face" else 5e-4)
    groups = _parameter_groups(model, head, decay)
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=True)
    else:
        optimizer = torch.optim.AdamW(groups, lr=config.lr)
    steps_per_epoch = (len(data) // dist.world) // config.batch_size
    if config.steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, config.steps_per_epoch)
    scheduler = _schedule(optimizer, config, max(steps_per_epoch, 1))
    scaler = torch.amp.GradScaler("cuda", enabled=config.amp and device.type == "cuda")
    return _Training(model, model, head, optimizer, scheduler, scaler, steps_per_epoch, [],
                     old_classifier=old_classifier)


def finetune(model: nn.Module, data: LabeledImages, out: str | Path, config: FinetuneConfig, *, resume: bool = False,
             override: bool = False, teacher: nn.Module | None = None, old_classifier: MarginHead | None = None,
             evaluate: Callable[[nn.Module], dict[str, Any]] | None = None,
             progress: Callable[[int, int, dict[str, float]], None] | None = None,
             device: torch.device | None = None) -> list[dict[str, Any]]:
    """Fine-tunes ``model`` in place on ``data``; writes checkpoints and metrics into ``out``.

    Returns the metrics of every epoch (also in ``out/metrics.jsonl``, one JSON line each).
    ``resume`` continues from ``out``'s checkpoint with the settings it was written with; other
    settings are refused unless ``override``, and then recorded in the next epoch's metrics.

    Args:
        model: a module foadx built, pruned or loaded; it takes (N, C, H, W) images at its
            provenance's input size and is left in eval mode.
        data: labelled images (classes, or identities for ``task`` "face").
        teacher: the network to distil from (weighted by ``config.distill_weight``), or None.
        old_classifier: the old model's frozen margin head (``foadx.train.compat``) for
            backward-compatible training (face), weighted by ``config.compatibility_weight``, or None.
        evaluate: called on the model after each epoch; its results join the metrics as ``eval_*``.
        progress: called with (step, steps in the epoch, running metrics).
        device: None picks the GPU when there is one (under ``torchrun``, each rank's).

    Raises:
        BadInputError: a setting out of range (``FinetuneConfig.validate``), a module without
            foadx provenance, a missing or unreadable checkpoint to resume, or other settings
            than the checkpoint's without ``override`` (CLI exit code 3).
        TrainingDiverged: the loss became NaN or infinite (a BadInputError, exit code 3).
    """
    config.validate()
    out = Path(out)
    source = require_provenance(model, "fine-tuning").source
    torch.manual_seed(config.seed)  # the margin head's initialisation
    dist = Distributed.from_environment(device)
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
    run = _set_up(model, data, config, source, dist, old_classifier)
    changed = _resume(run, model, out, config, override) if resume else {}
    run.trained = dist.wrap(model)
    dataset = _Images(data, tuple(source.input_size))
    for epoch in range(run.start_epoch, config.epochs):
        record = _train_epoch(run, dataset, epoch, config, source, dist, teacher, progress)
        if changed:  # the first epoch after an overridden resume says what changed
            record["resume_overrides"], changed = {key: list(pair) for key, pair in changed.items()}, {}
        if evaluate is not None and dist.is_main:
            model.eval()
            record.update({f"eval_{key}": value for key, value in evaluate(model).items()})
        run.history.append(record)
        if dist.is_main:
            _append_metrics(out / METRICS_FILE, record)
            save_checkpoint(out / CHECKPOINT_FILE, run.checkpoint(epoch + 1, config))
        dist.barrier()
    model.eval()
    return run.history


def _resume(run: _Training, model: nn.Module, out: Path, config: FinetuneConfig,
            override: bool) -> dict[str, tuple[Any, Any]]:
    """Restores ``out``'s checkpoint into ``run``; returns the settings that differ from it.

    Raises:
        BadInputError: other settings than the checkpoint's without ``override``.
    """
    state = load_checkpoint(out / CHECKPOINT_FILE, model)
    changed = resume_differences(check_resumable(state, model, run.head, out / CHECKPOINT_FILE), config)
    if changed and not override:
        listed = ", ".join(f"{key} {old!r} -> {new!r}" for key, (old, new) in changed.items())
        raise BadInputError(f"--resume with other settings than the checkpoint's ({listed}); "
                            "repeat them, or add --override to continue with the new ones")
    try:
        run.restore(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as error:  # torch's own loaders, on what passed the checks
        raise BadInputError(f"{out / CHECKPOINT_FILE} cannot be resumed: {first_line(error, 200)}") from None
    return changed


def resume_differences(saved: dict[str, Any], config: FinetuneConfig) -> dict[str, tuple[Any, Any]]:
    """Settings that differ from the checkpoint's (the worker count does not change results)."""
    current = asdict(config)
    return {key: (saved.get(key), value) for key, value in current.items()
            if key != "workers" and saved.get(key) != value}


class TrainingDiverged(BadInputError):
    """The loss became NaN or infinite: these settings do not train this model."""


def _train_epoch(run: _Training, dataset: "_Images", epoch: int, config: FinetuneConfig, source: ModelSource,
                 dist: Distributed, teacher: nn.Module | None,
                 progress: Callable[[int, int, dict[str, float]], None] | None) -> dict[str, Any]:
    device = dist.device
    if run.head is not None:
        run.head.margin_scale = min(1.0, (epoch + 1) / (config.margin_warmup_epochs + 1))
    order, generator = _epoch_order(len(dataset), config, epoch, dist)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=config.batch_size, sampler=order, num_workers=config.workers, drop_last=True,
    )
    run.model.train()
    seen = correct = 0
    loss_sum = 0.0
    started = time.perf_counter()
    for step, (images, labels) in enumerate(loader):
        if step >= run.steps_per_epoch:
            break
        flips = torch.rand(len(images), generator=generator) < 0.5
        if config.flip:
            images[flips] = images[flips].flip(2)
        batch = prepare_batch(images, source.input_size, source.mean, source.std).to(device)
        if config.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        labels = labels.to(device)
        loss, logits = _step(run, batch, labels, config, teacher, device)
        if not bool(torch.isfinite(loss.detach())):
            raise TrainingDiverged(
                f"the loss became {float(loss.detach())} at epoch {epoch + 1}, step {step + 1} (try a lower --lr or "
                f"--scale); the last good checkpoint is the one written after epoch {epoch} (--resume continues from it)"
            )
        seen += len(labels)
        loss_sum += float(loss.detach()) * len(labels)
        correct += int((logits.argmax(1) == labels).sum())
        if progress is not None and dist.is_main:
            elapsed = time.perf_counter() - started
            progress(step + 1, run.steps_per_epoch, {"epoch": epoch + 1, "loss": loss_sum / seen,
                                                     "acc": correct / seen, "img/s": seen * dist.world / elapsed})
    totals = dist.sum([loss_sum, correct, seen])
    seconds = time.perf_counter() - started
    return {
        "epoch": epoch + 1, "loss": totals[0] / totals[2], "train_accuracy": totals[1] / totals[2],
        "lr_end": run.optimizer.param_groups[0]["lr"], "images": int(totals[2]),
        "images_per_s": totals[2] / seconds, "seconds": seconds, "world_size": dist.world,
    }


def _step(run: _Training, batch: torch.Tensor, labels: torch.Tensor, config: FinetuneConfig,
          teacher: nn.Module | None, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step (autocast, margin head, optional distillation and BCT influence loss);
    returns loss and logits."""
    with torch.autocast(device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16, enabled=config.amp):
        outputs = run.trained(batch)
        logits = run.head(outputs, labels) if run.head is not None else outputs
        loss = F.cross_entropy(logits.float(), labels)
        if teacher is not None:
            loss = loss + config.distill_weight * _distill_loss(outputs, teacher, batch, config)
        if run.old_classifier is not None:
            loss = loss + config.compatibility_weight * influence_loss(run.old_classifier, outputs, labels)
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.scheduler.step()
    return loss, logits


def check_trainable(model: nn.Module, input_chw: tuple[int, int, int], task: str, classes: int) -> int:
    """The width of the model's one output (N, width): logits (classify) or an embedding (face).

    Raises:
        BadInputError: the model returns several tensors or not one (N, width) tensor, or a
            classifier has fewer logits than the data has classes.
    """
    parameter = next(model.parameters(), None)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        outputs = model(torch.zeros(2, *input_chw, device=parameter.device if parameter is not None else "cpu"))
    model.train(was_training)
    if not isinstance(outputs, torch.Tensor) or outputs.dim() != 2:
        shown = ", ".join(f"{name} {tuple(tensor.shape)}" for name, tensor in flatten_outputs(outputs))
        raise BadInputError(f"fine-tuning trains a model with one (N, classes or embedding) output; this one returns "
                            f"{shown}")
    if task == "classify" and outputs.shape[1] < classes:
        raise BadInputError(f"the model outputs {outputs.shape[1]} logits, and the data has {classes} classes")
    return int(outputs.shape[1])


def _distill_loss(outputs: torch.Tensor, teacher: nn.Module, batch: torch.Tensor, config: FinetuneConfig) -> torch.Tensor:
    """Knowledge distillation from the unpruned network: softened KL on logits (classify), one
    minus cosine similarity of embeddings (face)."""
    with torch.no_grad():
        target = teacher(batch)
    if config.task == "face":
        return (1 - F.cosine_similarity(outputs.float(), target.float())).mean()
    temperature = config.distill_temperature
    return F.kl_div(F.log_softmax(outputs.float() / temperature, 1), F.softmax(target.float() / temperature, 1),
                    reduction="batchmean") * temperature ** 2


def _append_metrics(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as stream:
        stream.write(json.dumps(record) + "\n")
