"""``evaluate_model``: one entry point for ``foadx eval`` and per-epoch evaluation in training.

A module runs on torch (CPU), an ONNX file in onnxruntime or OpenVINO with the preprocessing its
foadx metadata records; all through the runtime layer. Face data gives one verification row per
set (every ``*.bin`` of an insightface folder, as insightface's verification callback prints).
An image folder without a split is never scored on the images the model was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from foadx.data.labeled import demo_pairs, identity_images, open_labeled
from foadx.data.layout import DataLayout, data_identity, describe_data, resolve_task
from foadx.data.verification import PairSet, read_pairs
from foadx.errors import BadInputError, DataError
from foadx.evaluate.allpairs import unit_embeddings
from foadx.evaluate.api import Preprocessing, top1
from foadx.evaluate.protocols import PROTOCOLS, Embedder, RocRow, all_pairs_rows, listed_pairs_rows
from foadx.evaluate.roc import FAR_POINTS
from foadx.evaluate.verification import VerificationResult, pair_distances, verify_pairs
from foadx.provenance import require_provenance
from foadx.resolve import ModelRef, as_ref
from foadx.runtime import SessionOptions, open_session

ONNX_BACKENDS = ("ort-cpu", "openvino")


@dataclass
class EvalResult:
    """What ``evaluate_model`` measured: top-1, 10-fold verification per pair set, and ROC rows
    (same-model and cross-model) per set; ``far_target`` is the FAR the summary reports TAR at."""

    task: str
    backend: str
    classification: dict[str, Any] | None = None
    verification: dict[str, VerificationResult] = field(default_factory=dict)  # set name -> result
    roc: list[RocRow] = field(default_factory=list)
    protocol: str = "pairs"
    far_target: float = 1e-3

    def summary(self) -> dict[str, Any]:
        if self.classification is not None:
            return {"top1": self.classification["top1"]}
        if not self.verification:
            return self.roc_summary()
        if len(self.verification) == 1:
            result = next(iter(self.verification.values()))
            return {"verification_accuracy": result.accuracy, "verification_std": result.accuracy_std, "tar": result.tar}
        return {f"{name}_accuracy": result.accuracy for name, result in self.verification.items()}

    def roc_summary(self) -> dict[str, Any]:
        """The first set's same-model TAR at ``far_target`` (None where not measurable), EER and
        AUC, and the cross-model TAR where a gallery model was given."""
        first = self.roc[0]
        point = first.roc.point(self.far_target)
        summary = {"tar": point.tar if point else None, "eer": first.roc.eer, "auc": first.roc.auc}
        cross = next((row for row in self.roc if row.cross and row.set == first.set), None)
        if cross is not None:
            cross_point = cross.roc.point(self.far_target)
            summary["cross_tar"] = cross_point.tar if cross_point else None
        return summary

    def to_json(self) -> dict[str, Any]:
        if self.classification is not None:
            return {"backend": self.backend, **self.classification}
        extra = {"protocol": self.protocol, "far_target": self.far_target, "roc": [row.to_json() for row in self.roc]}
        if len(self.verification) == 1:
            return {"backend": self.backend, **next(iter(self.verification.values())).to_json(), **extra}
        if not self.verification:
            return {"backend": self.backend, **extra}
        return {"backend": self.backend, "sets": {name: result.to_json() for name, result in self.verification.items()},
                **extra}

    def lines(self) -> list[str]:
        if self.classification is not None:
            held_out = self.classification.get("held_out")
            where = f" (held-out {held_out['val_split']:g}, seed {held_out['seed']})" if held_out else ""
            return [f"top-1 {self.classification['top1']:.4f} on {self.classification['count']} images{where} ({self.backend})"]
        return ([f"{name}: {_verification_line(result)} ({self.backend})" for name, result in self.verification.items()]
                + [row.line() for row in self.roc])


def _verification_line(result: VerificationResult) -> str:
    line = (f"verification accuracy {result.accuracy:.4f} +- {result.accuracy_std:.4f} over {result.folds} folds "
            f"of {result.pairs} pairs, mean threshold {sum(result.thresholds) / len(result.thresholds):.2f}")
    if result.tar is not None:
        line += f"; TAR {result.tar:.4f} +- {result.tar_std:.4f} at FAR {result.far:.2e} (target {result.far_target:g})"
    return line


def _runner(ref: ModelRef, backend: str | None) -> tuple[Any, Preprocessing, str]:
    """A session and the preprocessing it expects: a module on torch (CPU); an ONNX file in
    onnxruntime (or OpenVINO) with the preprocessing its foadx metadata records."""
    if not ref.runs_in_torch:
        if ref.kind != "onnx" or ref.source is None:
            raise BadInputError(f"{ref.text} carries no foadx preprocessing metadata (input size, mean, std); "
                                "evaluate a foadx-exported ONNX file, a model or an artifact")
        backend = backend or "ort-cpu"
        if backend not in ONNX_BACKENDS:
            raise BadInputError(f"an ONNX file is evaluated on {' or '.join(ONNX_BACKENDS)}, not {backend}")
        session = open_session(backend, ref.path)
        return session, Preprocessing(tuple(ref.input_chw[1:]), tuple(ref.source.mean), tuple(ref.source.std)), backend
    if backend not in (None, "torch-cpu"):
        raise BadInputError(f"{ref.text} is a PyTorch model: it is evaluated on torch-cpu (export it for {backend})")
    source = require_provenance(ref.module(), "evaluation").source
    session = open_session("torch-cpu", ref.module(), SessionOptions(), input_shape=(None, *source.input_chw))
    return session, Preprocessing(tuple(source.input_size), tuple(source.mean), tuple(source.std)), "torch-cpu"


def held_out_split(ref: ModelRef, layout: DataLayout, val_split: float | None, seed: int,
                   allow_train_overlap: bool) -> tuple[float, int] | None:
    """The (fraction, seed) to hold out of an unsplit image folder for evaluation, or None to
    evaluate all of it. The split a model was fine-tuned with is reused, so its held-out images
    are exactly the ones it never saw; a folder it was trained on whole is refused."""
    if layout.kind != "folder" or any((Path(layout.source) / name).is_dir() for name in ("train", "val", "test")):
        return (val_split, seed) if val_split is not None else None
    trained = ref.training_data or {}
    if trained.get("source") != data_identity(layout.source):
        return (val_split, seed) if val_split is not None else None
    recorded = trained.get("split")
    if isinstance(recorded, dict):
        if val_split is not None and val_split != recorded.get("val_split"):
            raise DataError(f"{ref.text} was fine-tuned holding out --val-split {recorded.get('val_split')} of "
                            f"{layout.source}; another split would score it on images it trained on")
        return float(recorded["val_split"]), int(recorded["seed"])
    if allow_train_overlap:
        return None
    raise DataError(f"{ref.text} was fine-tuned on every image in {layout.source}: top-1 there measures memory, not "
                    "accuracy; fine-tune with --val-split, evaluate other images, or pass --allow-train-overlap")


def pair_sets(layout: DataLayout) -> list[tuple[str, np.ndarray | None, PairSet]]:
    """(name, image array or None, pairs) per verification set the data holds."""
    if layout.kind == "demo":
        images, pairs = demo_pairs()
        return [("demo", images, pairs)]
    if layout.kind in ("insightface", "pairs"):
        if not layout.verification_sets:
            raise DataError(f"{layout.source} has no verification sets (*.bin) to evaluate on")
        return [(path.stem, None, read_pairs(path)) for path in layout.verification_sets]
    if layout.kind == "lfw":
        return [("lfw", None, read_pairs(layout.source))]
    raise DataError(f"{layout.source} holds {layout.evidence()}, not face verification pairs")


def evaluate_model(target: nn.Module | ModelRef, data: str, task: str | None = None, *, batch_size: int = 128,
                   far_target: float = 1e-3, backend: str | None = None, val_split: float | None = None,
                   seed: int = 0, allow_train_overlap: bool = False, protocol: str = "pairs",
                   gallery: ModelRef | None = None) -> EvalResult:
    """Top-1 on the test split (classify), or face verification: ``protocol`` "pairs" (10-fold
    accuracy and a ROC per listed pair set) or "all" (a ROC over every pair of an
    identity-labelled set); ``gallery`` adds its same-model rows and the cross-model rows. The
    task is the data's own unless given (and then it must agree); "all" is always face.

    Raises:
        BadInputError: an unknown protocol, a gallery model for classification or with another
            input size or embedding size; DataError: data the protocol cannot use.
    """
    ref = as_ref(target)
    layout = describe_data(data)
    task = _face_task(layout, task, ref, protocol)
    session, preprocess, used = _runner(ref, backend)

    def run(batch):
        return session.run_any_batch(batch)[0]  # a file with a fixed batch takes --batch-size images too

    if task == "classify":
        if gallery is not None:
            raise BadInputError("--gallery-model compares face embeddings; this evaluation is top-1 classification")
        split = held_out_split(ref, layout, val_split, seed, allow_train_overlap)
        fraction, split_seed = split if split else (None, seed)
        images = open_labeled(data, "test", val_split=fraction, seed=split_seed, channels=ref.input_chw[0],
                              input_size=tuple(ref.input_chw[1:]))
        return EvalResult(task, used, classification={**top1(run, images, preprocess, batch_size),
                                                      **({"held_out": images.split} if images.split else {})})
    model = Embedder(ref.text, run, preprocess)
    other = _gallery_embedder(gallery, preprocess) if gallery is not None else None
    far_points = tuple(sorted(set(FAR_POINTS) | {far_target}, reverse=True))
    result = EvalResult(task, used, protocol=protocol, far_target=far_target)
    if protocol == "all":
        split = held_out_split(ref, layout, val_split, seed, allow_train_overlap)
        fraction, split_seed = split if split else (None, seed)
        identities = identity_images(data, val_split=fraction, seed=split_seed)
        result.roc = all_pairs_rows(identities.description, identities, model, other, batch_size, far_points)
        return result
    for name, images, pairs in pair_sets(layout):
        decoded = pairs.decoded(images)
        raw = model.raw(decoded, batch_size)
        result.verification[name] = verify_pairs(pair_distances(raw), pairs.same, far_target=far_target)
        result.roc += listed_pairs_rows(name, decoded, pairs.same, model, other, batch_size, far_points,
                                        probe=unit_embeddings(raw, model.name))
    return result


def _face_task(layout: DataLayout, task: str | None, ref: ModelRef, protocol: str) -> str:
    """The task: the data's (``resolve_task``) for "pairs"; face for "all", whose data is an
    identity-labelled set whatever it would otherwise serve.

    Raises:
        BadInputError: an unknown protocol, or "all" with --task classify or a classifier model.
    """
    if protocol not in PROTOCOLS:
        raise BadInputError(f"--protocol must be {' or '.join(PROTOCOLS)}, got {protocol!r}")
    if protocol == "pairs":
        return resolve_task(layout, task, model=ref.task)
    if task not in (None, "face") or ref.task == "classify":
        raise BadInputError("--protocol all verifies face embeddings; "
                            f"{'--task ' + task if task not in (None, 'face') else ref.text + ' outputs class logits'}")
    return "face"


def _gallery_embedder(gallery: ModelRef, preprocess: Preprocessing) -> Embedder:
    """The gallery model as an ``Embedder`` on its default backend.

    Raises:
        BadInputError: a classifier, or another input size than the model's.
    """
    if gallery.task == "classify":
        raise BadInputError(f"the gallery model {gallery.text} outputs class logits, not face embeddings")
    session, gallery_preprocess, _ = _runner(gallery, None)
    if gallery_preprocess.input_size != preprocess.input_size:
        size, own = gallery_preprocess.input_size, preprocess.input_size
        raise BadInputError(f"the gallery model {gallery.text} takes {size[0]}x{size[1]} images, the model "
                            f"{own[0]}x{own[1]}: a deployment swapping one for the other re-aligns its faces")
    return Embedder(gallery.text, lambda batch: session.run_any_batch(batch)[0], gallery_preprocess)
