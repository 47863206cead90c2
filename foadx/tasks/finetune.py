"""The fine-tune task: a model and labelled data -> a fine-tuned artifact folder.

``prepare_finetune`` makes every decision and every refusal before any work (which task the
data and options ask for, the configuration's ranges, the output folder, the data's split);
``FinetuneJob.run`` trains and writes the artifact (plan + weights) beside its checkpoint and
metrics, replacing an earlier output folder only when the new run is done.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from torch import nn

from foadx.atomic import atomic_directory, check_folder_target, prepare_output
from foadx.data.labeled import LabeledImages
from foadx.errors import BadInputError
from foadx.pruning.artifact import ARTIFACT_FILES, PLAN_FILE, record_training, write_artifact_files
from foadx.provenance import provenance_of, require_provenance
from foadx.train import CHECKPOINT_FILE, METRICS_FILE, FinetuneConfig, finetune
from foadx.train.loop import check_trainable

FINETUNE_FILES = ARTIFACT_FILES | {CHECKPOINT_FILE, METRICS_FILE}


@dataclass(frozen=True)
class TrainingData:
    """Where the labelled images come from: ``source`` (demo, CIFAR batches, class folders, an
    insightface folder or a .rec), the task asked for (None: the data's own), and the held-out
    fraction of an unsplit folder."""

    source: str
    task: str | None = None
    val_split: float | None = None


@dataclass(frozen=True)
class Resume:
    """Continue a killed run from ``OUT/checkpoint.pt``; ``override`` accepts settings that
    differ from the checkpoint's (recorded)."""

    enabled: bool = False
    override: bool = False


@dataclass
class FinetuneJob:
    """A checked fine-tune, ready to run; ``notes`` are what the data reader wants said first."""

    model: nn.Module
    data: LabeledImages
    out: Path
    config: FinetuneConfig
    record: dict[str, Any]
    resume: Resume = field(default_factory=Resume)
    force: bool = False
    old_classifier: Any = None  # BCT: the old model's frozen margin head (foadx.train.compat)

    @property
    def notes(self) -> list[str]:
        return list(self.data.notes)

    def run(self, **training: Any) -> list[dict[str, Any]]:
        """Trains and writes the artifact; returns one metrics dict per epoch.

        Args:
            training: ``teacher``, ``evaluate``, ``progress`` and ``device`` of ``foadx.train.finetune``.
        """
        return finetune_to_artifact(self.model, self.data, self.out, self.config, self.record,
                                    resume=self.resume.enabled, force=self.force, override=self.resume.override,
                                    old_classifier=self.old_classifier, **training)


def prepare_finetune(model: nn.Module, data: TrainingData, out: str | Path, config: FinetuneConfig, *,
                     origin: str, resume: Resume = Resume(), force: bool = False,
                     compatible_with: str | None = None) -> FinetuneJob:
    """Decides the task (the data's, unless ``data.task`` agrees), validates ``config`` for it,
    checks ``out`` and opens the training split.

    Args:
        model: the network to fine-tune (trained in place).
        origin: what the model was (a MODEL text or an artifact path), for the plan's record.
        compatible_with: a face fine-tune folder whose frozen margin head also classifies the
            model's embeddings (backward-compatible training, ``foadx.train.compat``), or None.

    Raises:
        BadInputError: a contradicting task, an option out of range, an ``out`` folder that is
            neither new, empty nor an earlier fine-tune's (without ``force``), or a
            ``compatible_with`` folder that has no margin head or was trained on other data;
        DataError: the data cannot be read, or the model's input channels are not 1, 3 or 4.
    """
    from foadx.data.labeled import open_labeled
    from foadx.data.layout import data_identity, describe_data, resolve_task

    provenance = require_provenance(model, "fine-tuning")
    config = replace(config, task=resolve_task(describe_data(data.source), data.task, model=provenance.task))
    config.validate()
    target = check_finetune_output(out, resume=resume.enabled, force=force)
    training = open_labeled(data.source, "train", config.task, val_split=data.val_split, seed=config.seed,
                            channels=provenance.source.input_channels, input_size=provenance.source.input_size)
    check_trainable(model, provenance.source.input_chw, config.task, training.classes)
    record = {"data": data.source, "from": origin,
              "training_data": {"source": data_identity(data.source), "split": training.split}}
    old_classifier = None
    if compatible_with is not None:
        old_classifier = _old_classifier(compatible_with, config.task, data_identity(data.source))
        record["compatible_with"] = {"model": compatible_with, "method": "bct", "weight": config.compatibility_weight}
    return FinetuneJob(model, training, target, config, record, resume, force, old_classifier)


def _old_classifier(folder: str, task: str, source: str) -> Any:
    """The frozen margin head of the face fine-tune in ``folder``, checked to fit this run.

    Raises:
        BadInputError: not the face task, no margin head, or a head trained on other identities.
    """
    from foadx.resolve import resolve_model
    from foadx.train.compat import load_old_classifier

    if task != "face":
        raise BadInputError(f"--compatible-with trains face embeddings to stay comparable; this is a {task} fine-tune")
    head = load_old_classifier(folder)
    trained_on = (resolve_model(folder).training_data or {}).get("source")
    if trained_on != source:
        raise BadInputError(f"{folder}'s classifier was trained on {trained_on}, not {source}: backward-compatible "
                            "training classifies the same identities with it")
    return head


def check_finetune_output(out: str | Path, *, resume: bool, force: bool) -> Path:
    """Before any work: resuming needs the earlier run's folder; otherwise the folder must be
    new, empty, an earlier fine-tune output, or replaced with ``force``.

    Raises:
        BadInputError: the folder cannot be used as asked.
    """
    if resume:
        target = prepare_output(out, "folder")
        if not (target / CHECKPOINT_FILE).is_file():
            raise BadInputError(f"resume: no {CHECKPOINT_FILE} in {target}")
        return target
    return check_folder_target(out, _own_finetune_output, force, "foadx finetune")


def _own_finetune_output(folder: Path) -> bool:
    """An earlier fine-tune's folder: finished (with a plan) or killed (a checkpoint only)."""
    names = {entry.name for entry in folder.iterdir()}
    return names <= FINETUNE_FILES and bool(names & {PLAN_FILE, CHECKPOINT_FILE})


def finetune_to_artifact(model: nn.Module, data: LabeledImages, out: str | Path, config: FinetuneConfig,
                         record: dict[str, Any], *, resume: bool = False, force: bool = False,
                         **training: Any) -> list[dict[str, Any]]:
    """Fine-tunes ``model`` and writes it as an artifact into ``out`` with its checkpoint and
    metrics. Into a new or empty folder the run trains in place, so a run that is killed or
    diverges leaves its last good checkpoint there for resuming; an existing earlier output
    (or a ``force``-d folder) is replaced as a whole only when the new run is done."""
    from foadx.train.distributed import Distributed

    target = check_finetune_output(out, resume=resume, force=force)
    processes = Distributed.from_environment(training.get("device"))
    fresh_folder = not target.exists() or not any(target.iterdir())
    if resume or fresh_folder or not processes.is_main or processes.world > 1:
        return _train_and_write(model, data, target, config, record, resume, processes.is_main, training)
    with atomic_directory(target) as staging:
        return _train_and_write(model, data, staging, config, record, resume, True, training)


def _train_and_write(model: nn.Module, data: LabeledImages, folder: Path, config: FinetuneConfig,
                     record: dict[str, Any], resume: bool, is_main: bool, training: dict[str, Any]) -> list[dict[str, Any]]:
    history = finetune(model, data, folder, config, resume=resume, **training)
    if is_main:
        model.to("cpu")
        record_training(model, {"config": asdict(config), **record, "epochs": history})
        state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
        write_artifact_files(folder, provenance_of(model).plan, state)
    return history


def epoch_evaluator(data: str, task: str) -> Callable[[nn.Module], dict[str, float]]:
    """An evaluation after each epoch on ``data`` (its test split or pairs): metric -> value."""
    from foadx.evaluate.runner import evaluate_model

    return lambda network: evaluate_model(network, data, task).summary()
