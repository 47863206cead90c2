"""What a ``--data`` argument holds, and so which task it serves: the one place that decides.

- ``demo``: the embedded digits (both tasks: classes, or identities and held-out pairs);
- a CIFAR folder (``data_batch_*``/``test_batch``) or a class-per-folder tree: classification;
- an insightface dataset folder (``train.rec``, ``train.idx``, ``property`` and the verification
  sets ``lfw.bin``, ``cfp_fp.bin``, ``agedb_30.bin``, ...), a ``.rec`` file, a ``.bin`` file or
  an LFW folder with ``pairs.txt``: face recognition.

A ``--task`` that contradicts the data is refused with the reason, rather than training a
classifier on identities or reading verification pairs as classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from foadx.errors import DataError

TASKS = ("classify", "face")
INSIGHTFACE_TRAIN = "train.rec"


@dataclass(frozen=True)
class DataLayout:
    source: str
    kind: str  # demo | cifar | folder | insightface | records | pairs | lfw
    task: str | None  # the task the data implies; None where it serves both
    train_records: Path | None = None
    verification_sets: tuple[Path, ...] = ()

    def evidence(self) -> str:
        """What in the data decided its task, for messages."""
        if self.train_records is not None:
            return self.train_records.name if self.kind == "records" else f"{self.train_records.name} in {self.source}"
        if self.verification_sets:
            return ", ".join(path.name for path in self.verification_sets[:3])
        return {"lfw": "pairs.txt", "cifar": "CIFAR batches", "folder": "class folders"}.get(self.kind, self.kind)


def describe_data(source: str) -> DataLayout:
    if source == "demo":
        return DataLayout(source, "demo", None)
    path = Path(source)
    if not path.exists():
        raise DataError(f"data not found: {source}")
    if path.is_file():
        if path.suffix == ".rec":
            return DataLayout(source, "records", "face", train_records=path)
        if path.suffix == ".bin":
            return DataLayout(source, "pairs", "face", verification_sets=(path,))
        raise DataError(f"unsupported data file {source}: a .rec or .bin file, or a folder")
    bins = tuple(sorted(path.glob("*.bin")))
    if (path / INSIGHTFACE_TRAIN).is_file() or bins:
        records = path / INSIGHTFACE_TRAIN
        return DataLayout(source, "insightface", "face", records if records.is_file() else None, bins)
    if (path / "pairs.txt").is_file():
        return DataLayout(source, "lfw", "face")
    if any(path.glob("data_batch_*")) or (path / "test_batch").is_file():
        return DataLayout(source, "cifar", "classify")
    return DataLayout(source, "folder", "classify")


def resolve_task(layout: DataLayout, task: str | None, model: str | None = None) -> str:
    """The one decision of a command's task: ``task`` if given and consistent with the data,
    else the data's own; where the data serves both (the demo digits) the model's own task,
    else "classify". ``model``: what the
    model's output is ("classify" logits, "face" embeddings; None or "unknown" when not known),
    which the data's task must match when no task is given.

    Raises:
        DataError: an unknown task, a task the data contradicts, or a task the model's output
            cannot serve (a classifier's logits scored as face embeddings, or the reverse).
    """
    given = task
    if task is not None and task not in TASKS:
        raise DataError(f"--task must be classify or face, got {task!r}")
    if task is None:
        task = layout.task or (model if model in TASKS else "classify")
    elif layout.task is not None and task != layout.task:
        raise DataError(f"--task {task} conflicts with {layout.source}: it holds {layout.task} data "
                        f"({layout.evidence()}); leave --task out or give --task {layout.task}")
    if given is None and model in TASKS and model != task:  # an explicit task is the user's to choose
        output = "class logits (a classifier)" if model == "classify" else "face embeddings"
        raise DataError(f"the model outputs {output}, but {layout.source} asks for the {task} task "
                        f"({layout.evidence()}); give {model} data for this model")
    return task


def data_identity(source: str) -> str:
    """How a training source is recorded, so that evaluation can recognise the same images."""
    return source if source == "demo" else str(Path(source).resolve())
