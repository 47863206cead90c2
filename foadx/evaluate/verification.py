"""Face verification by the insightface protocol (``recognition/arcface_torch/eval/verification.py``).

Embeddings: the embedding of each image plus that of its horizontal flip, L2-normalised. A pair
is called "same" when the squared Euclidean distance of its embeddings is below a threshold.
Ten folds in order (sklearn ``KFold(shuffle=False)`` sizes); on each, the threshold from
``arange(0, 4, 0.01)`` with the best accuracy on the other nine folds is tested on it. Reported:
mean and (population) std of the ten test accuracies, and the chosen thresholds.

TAR at a FAR: on each fold the threshold reaching the target FAR on the other nine folds
(``arange(0, 4, 0.001)``, interpolated between the thresholds' FARs) is applied to the test fold.
insightface interpolates with ``scipy.interp1d(kind='slinear')`` over the raw FAR curve; foadx
interpolates over its distinct FAR values with ``np.interp`` (the curve has long flat runs, which
interp1d does not define), so values can differ in the last digits. Reported only where the
training folds hold enough different-person pairs to measure the FAR (at least 1/FAR).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from foadx.errors import DataError

ACCURACY_THRESHOLDS = np.arange(0, 4, 0.01)
FAR_THRESHOLDS = np.arange(0, 4, 0.001)


@dataclass(frozen=True)
class VerificationResult:
    """The 10-fold verification outcome: mean and population std of the test-fold accuracies
    (fractions), each fold's chosen squared-distance threshold, TAR (and its std) at the achieved
    FAR for ``far_target`` (fractions; None where the folds cannot measure that FAR), and the
    numbers of pairs and folds."""

    accuracy: float
    accuracy_std: float
    thresholds: list[float]  # the threshold chosen for each fold
    tar: float | None
    tar_std: float | None
    far: float | None
    far_target: float
    pairs: int
    folds: int

    def to_json(self) -> dict[str, object]:
        """The fields as a JSON-ready dict."""
        return asdict(self)


def fold_indices(count: int, folds: int) -> list[np.ndarray]:
    """Consecutive folds; the first ``count % folds`` one larger (sklearn's KFold, no shuffle)."""
    if count < folds:
        raise DataError(f"{count} pairs cannot be split into {folds} folds")
    return np.array_split(np.arange(count), folds)


def _accuracy(threshold: float, distances: np.ndarray, same: np.ndarray) -> float:
    return float(np.mean((distances < threshold) == same))


def _tar_far(threshold: float, distances: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    accepted = distances < threshold
    return float(np.mean(accepted[same])), float(np.mean(accepted[~same]))


def _threshold_for_far(distances: np.ndarray, same: np.ndarray, far_target: float) -> float:
    fars = np.array([np.mean(distances[~same] < t) for t in FAR_THRESHOLDS])
    if fars.max() < far_target:
        return 0.0  # insightface's convention
    distinct, first = np.unique(fars, return_index=True)
    return float(np.interp(far_target, distinct, FAR_THRESHOLDS[first]))


def verify_pairs(distances: np.ndarray, same: np.ndarray, folds: int = 10, far_target: float = 1e-3) -> VerificationResult:
    """The 10-fold protocol on squared distances of L2-normalised embeddings, one per pair.

    Args:
        distances: (P,) squared distances in [0, 4] (``pair_distances``).
        same: (P,) booleans, True where a pair shows one person.
        folds: the number of folds (insightface uses 10).
        far_target: the false accept rate for TAR, a fraction.

    Raises:
        DataError: ``distances`` and ``same`` are not one-dimensional of one length, or there are
            fewer pairs than folds (CLI exit code 3).
    """
    distances = np.asarray(distances, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    if distances.shape != same.shape or distances.ndim != 1:
        raise DataError(f"need one distance per pair: {distances.shape} distances, {same.shape} labels")
    accuracies, chosen, tars, fars = [], [], [], []
    splits = fold_indices(len(same), folds)
    far_measurable = True
    for test in splits:
        train = np.setdiff1d(np.arange(len(same)), test)
        train_accuracy = [_accuracy(t, distances[train], same[train]) for t in ACCURACY_THRESHOLDS]
        best = float(ACCURACY_THRESHOLDS[int(np.argmax(train_accuracy))])
        chosen.append(best)
        accuracies.append(_accuracy(best, distances[test], same[test]))
        negatives, positives = int(np.sum(~same[train])), int(np.sum(same[train]))
        if negatives * far_target < 1 or positives == 0 or not np.any(same[test]) or np.all(same[test]):
            far_measurable = False
            continue
        tar, far = _tar_far(_threshold_for_far(distances[train], same[train], far_target), distances[test], same[test])
        tars.append(tar)
        fars.append(far)
    return VerificationResult(
        accuracy=float(np.mean(accuracies)), accuracy_std=float(np.std(accuracies)), thresholds=chosen,
        tar=float(np.mean(tars)) if far_measurable else None,
        tar_std=float(np.std(tars)) if far_measurable else None,
        far=float(np.mean(fars)) if far_measurable else None,
        far_target=far_target, pairs=len(same), folds=folds,
    )


def normalized(embeddings: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    return embeddings / np.maximum(norms, 1e-12)


def pair_distances(embeddings: np.ndarray) -> np.ndarray:
    """Squared distances of pairs (2k, 2k+1) of already flip-summed embeddings, after L2 norm.

    Takes (2P, D) embeddings and returns (P,) distances in [0, 4].
    """
    unit = normalized(np.asarray(embeddings, dtype=np.float64))
    return np.sum((unit[0::2] - unit[1::2]) ** 2, axis=1)
