"""Similarity scores of every pair of an identity-labelled set, in row blocks: the N x N score
matrix is never held, only a block of ``block_rows`` x N at a time (``BLOCK_SCORES`` scores,
16 MiB as float32), each block's scores handed to a ``ScoreCounter``.

Scores are cosines of L2-normalised embeddings. Same-model: every unordered pair i < j of one
model's embeddings. Cross-model: the gallery side of a pair embedded by one model, the probe side
by the other, over every ordered pair i != j, so both directions (gallery model's template
against the probe model's image, and the reverse) are pooled in one distribution.
"""

from __future__ import annotations

import numpy as np

from foadx.errors import BadInputError, DataError
from foadx.evaluate.roc import FAR_POINTS, RocResult, ScoreCounter

BLOCK_SCORES = 2 ** 22


def unit_embeddings(embeddings: np.ndarray, what: str) -> np.ndarray:
    """(N, D) embeddings -> (N, D) float32 rows of unit length.

    Raises:
        DataError: an embedding holds NaN or infinity, or is all zeros (a broken model), named by ``what``.
    """
    embeddings = np.asarray(embeddings, dtype=np.float64)
    broken = ~np.all(np.isfinite(embeddings), axis=1)
    if broken.any():
        raise DataError(f"{what} produced NaN or infinite embeddings for {int(broken.sum())} of {len(embeddings)} images")
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise DataError(f"{what} produced all-zero embeddings for {int(np.sum(norms == 0))} of {len(embeddings)} images")
    return (embeddings / norms).astype(np.float32)


def check_identities(labels: np.ndarray, source: str) -> None:
    """An all-pairs set needs two identities and one identity with at least two images.

    Raises:
        DataError: one identity only, or every identity with a single image.
    """
    _, counts = np.unique(labels, return_counts=True)
    if len(counts) < 2:
        raise DataError(f"{source} holds {len(counts)} identity: all-pairs verification needs at least two "
                        "(no impostor pairs otherwise)")
    if counts.max() < 2:
        raise DataError(f"every identity in {source} has one image: no genuine pairs to verify")


def check_comparable(probe: np.ndarray, gallery: np.ndarray) -> None:
    """Two models' (N, D) embeddings of the same N images must have one size to be compared.

    Raises:
        BadInputError: the embedding sizes differ.
    """
    if gallery.shape != probe.shape:
        raise BadInputError(f"the gallery model's embeddings have {gallery.shape[1]} dimensions, the model's "
                            f"{probe.shape[1]}: templates of one cannot be compared with the other's")


def all_pairs_roc(probe: np.ndarray, labels: np.ndarray, gallery: np.ndarray | None = None,
                  counter: ScoreCounter | None = None, far_points: tuple[float, ...] = FAR_POINTS) -> RocResult:
    """The ROC of every pair of ``labels``' images.

    Args:
        probe: (N, D) unit embeddings (``unit_embeddings``).
        labels: (N,) identity labels.
        gallery: None for same-model pairs (i < j); else the other model's (N, D) unit
            embeddings of the same images, for cross-model pairs (gallery i, probe j), i != j.
        counter: where scores go (a fresh ``ScoreCounter`` by default).
        far_points: the FARs (fractions) TAR is reported at.

    Raises:
        BadInputError: the embedding sizes differ.
        DataError: no genuine or no impostor pairs.
    """
    if gallery is not None:
        check_comparable(probe, gallery)
    counter = counter or ScoreCounter()
    labels = np.asarray(labels)
    count = len(labels)
    rows = max(1, BLOCK_SCORES // max(count, 1))
    for start in range(0, count, rows):
        stop = min(start + rows, count)
        if gallery is None:
            scores = probe[start:stop] @ probe[start:].T
            keep = np.arange(start, count)[None, :] > np.arange(start, stop)[:, None]
            same = labels[start:stop, None] == labels[None, start:]
        else:
            scores = gallery[start:stop] @ probe.T
            keep = np.arange(count)[None, :] != np.arange(start, stop)[:, None]
            same = labels[start:stop, None] == labels[None, :]
        counter.add(scores[keep & same], scores[keep & ~same])
    return counter.result(far_points)
