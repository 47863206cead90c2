"""Face verification protocols with a ROC, same-model and cross-model.

``pairs``: the listed pairs of a ``.bin``/LFW set (or the demo's held-out pairs); ``all``: every
pair of an identity-labelled set (``foadx.evaluate.allpairs``). Embeddings are insightface's
flip-summed ones (``flip_sum_embeddings``), L2-normalised; scores are cosines.

Cross-model rows answer whether an enrolled gallery survives a model swap: the gallery side of a
pair is embedded by the gallery model (e.g. the unpruned teacher), the probe side by the model
under test (the pruned student); both directions are pooled (for ``pairs``: gallery a with probe
b, and gallery b with probe a; for ``all``: every ordered pair).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from foadx.data.labeled import LabeledImages
from foadx.evaluate.allpairs import all_pairs_roc, check_comparable, check_identities, unit_embeddings
from foadx.evaluate.api import Preprocessing, flip_sum_embeddings
from foadx.evaluate.roc import FAR_POINTS, RocResult, roc_metrics

PROTOCOLS = ("pairs", "all")


@dataclass(frozen=True)
class Embedder:
    """One model as the protocols see it: ``name`` for rows and messages, ``run`` ((N, C, H, W)
    float32 -> (N, D) embeddings) and its ``preprocess``."""

    name: str
    run: Callable[[np.ndarray], np.ndarray]
    preprocess: Preprocessing

    def raw(self, images: Sequence[np.ndarray], batch_size: int) -> np.ndarray:
        """(N, D) flip-summed embeddings of ``images`` ((H, W, C) uint8 each), not normalised."""
        return flip_sum_embeddings(self.run, images, self.preprocess, batch_size)

    def embed(self, images: Sequence[np.ndarray], batch_size: int) -> np.ndarray:
        """(N, D) float32 unit flip-summed embeddings of ``images``.

        Raises:
            DataError: a NaN, infinite or all-zero embedding (a broken model).
        """
        return unit_embeddings(self.raw(images, batch_size), self.name)


@dataclass(frozen=True)
class RocRow:
    """One ROC row: the verification set, which model embedded the gallery side and which the
    probe side, whether they are two models (``cross``), and the metrics."""

    set: str
    gallery: str
    probe: str
    roc: RocResult
    cross: bool = False

    def to_json(self) -> dict[str, object]:
        return {"set": self.set, "gallery": self.gallery, "probe": self.probe, "cross": self.cross, **self.roc.to_json()}

    def line(self) -> str:
        """One line: which models, the measurable TARs with thresholds, EER and AUC."""
        who = f"gallery {self.gallery} x probe {self.probe}" if self.cross else self.probe
        measured = [f"{p.tar:.4f} @ FAR {p.far_target:g} (score > {p.threshold:.3f})" for p in self.roc.points if p.measurable]
        skipped = [f"{p.far_target:g}" for p in self.roc.points if not p.measurable]
        text = (f"{self.set} [{who}] {self.roc.genuine} genuine / {self.roc.impostor} impostor pairs: TAR "
                f"{', '.join(measured) or 'not measurable'}; EER {self.roc.eer:.4f} (score > {self.roc.eer_threshold:.3f}); "
                f"AUC {self.roc.auc:.4f}")
        if skipped:
            text += f"; FAR {', '.join(skipped)} not measurable ({self.roc.impostor} impostor pairs)"
        return text + (f"; histogram bins {self.roc.bin_width:.1e}" if self.roc.mode == "histogram" else "")


def labeled_view(data: LabeledImages) -> Sequence[np.ndarray]:
    """The images of ``data`` as a lazy sequence (decoded as a batch is sliced)."""
    return _LazyImages(data.load, range(len(data)))


class _LazyImages(Sequence[np.ndarray]):
    def __init__(self, load: Callable[[int], np.ndarray], indices: range) -> None:
        self.load, self.indices = load, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index):  # an int -> an image; a slice -> a lazy view
        if isinstance(index, slice):
            return _LazyImages(self.load, self.indices[index])
        return self.load(self.indices[index])


def all_pairs_rows(name: str, data: LabeledImages, model: Embedder, gallery: Embedder | None,
                   batch_size: int, far_points: tuple[float, ...] = FAR_POINTS) -> list[RocRow]:
    """Same-model rows (the model's, then the gallery model's) and the cross-model row of every
    pair of ``data``'s identities.

    Raises:
        BadInputError: embedding sizes that differ.
        DataError: fewer than two identities, no identity with two images, or a broken model's embeddings.
    """
    check_identities(data.labels, data.description)
    images = labeled_view(data)
    probe = model.embed(images, batch_size)
    rows = [RocRow(name, model.name, model.name, all_pairs_roc(probe, data.labels, far_points=far_points))]
    if gallery is not None:
        templates = gallery.embed(images, batch_size)
        rows.append(RocRow(name, gallery.name, gallery.name, all_pairs_roc(templates, data.labels, far_points=far_points)))
        cross = all_pairs_roc(probe, data.labels, gallery=templates, far_points=far_points)
        rows.append(RocRow(name, gallery.name, model.name, cross, cross=True))
    return rows


def listed_pairs_rows(name: str, images: Sequence[np.ndarray], same: np.ndarray, model: Embedder,
                      gallery: Embedder | None, batch_size: int, far_points: tuple[float, ...] = FAR_POINTS,
                      probe: np.ndarray | None = None) -> list[RocRow]:
    """The ROC rows of listed pairs (images 2k and 2k+1 are pair k); ``probe`` reuses the model's
    embeddings of ``images`` where they were already computed.

    Raises:
        BadInputError: embedding sizes that differ.
        DataError: a broken model's embeddings, or no genuine or no impostor pairs.
    """
    same = np.asarray(same, dtype=bool)
    probe = model.embed(images, batch_size) if probe is None else probe
    rows = [RocRow(name, model.name, model.name, _pair_roc(probe[0::2], probe[1::2], same, far_points))]
    if gallery is not None:
        templates = gallery.embed(images, batch_size)
        check_comparable(probe, templates)
        rows.append(RocRow(name, gallery.name, gallery.name, _pair_roc(templates[0::2], templates[1::2], same, far_points)))
        cross = np.r_[np.sum(templates[0::2] * probe[1::2], 1), np.sum(probe[0::2] * templates[1::2], 1)]
        both = np.r_[same, same]
        rows.append(RocRow(name, gallery.name, model.name, roc_metrics(cross[both], cross[~both], far_points), cross=True))
    return rows


def _pair_roc(first: np.ndarray, second: np.ndarray, same: np.ndarray, far_points: tuple[float, ...]) -> RocResult:
    scores = np.sum(first * second, axis=1)
    return roc_metrics(scores[same], scores[~same], far_points)
