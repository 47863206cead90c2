"""Evaluating a model through the runtime layer: a PyTorch model runs on a torch backend, an
ONNX file in onnxruntime, so the accuracy of the deployed file is measured, not assumed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from foadx.data.labeled import LabeledImages
from foadx.data.transforms import prepare_batch, resize_uint8
from foadx.data.verification import PairSet
from foadx.errors import BadInputError, DataError
from foadx.evaluate.verification import VerificationResult, pair_distances, verify_pairs

Runner = Callable[[np.ndarray], np.ndarray]  # float32 NCHW batch -> first output


@dataclass(frozen=True)
class Preprocessing:
    """A model's input contract as a callable: (N, H, W, C) images (uint8 0..255 or float 0..1)
    -> float32 (N, C, H, W) resized to ``input_size`` (H, W) and normalised (x - mean) / std."""

    input_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return prepare_batch(images, self.input_size, self.mean, self.std).numpy()


def top1(run: Runner, data: LabeledImages, preprocess: Preprocessing, batch_size: int = 128) -> dict[str, float]:
    """Top-1 accuracy of ``run`` ((N, C, H, W) batch -> (N, classes) scores) on ``data``.

    Returns:
        ``{"top1": fraction correct in [0, 1], "count": images scored}``.

    Raises:
        DataError: the split holds no images, or the model scores an image NaN or infinite (its
            top-1 would be whatever argmax makes of NaN); BadInputError: fewer scores than classes
            (exit 3).
    """
    if len(data) == 0:
        raise DataError("the evaluation split holds no images")
    correct = 0
    for start in range(0, len(data), batch_size):
        indices = range(start, min(start + batch_size, len(data)))
        images = np.stack([resize_uint8(data.load(i), preprocess.input_size) for i in indices])
        scores = run(preprocess(images))
        if scores.ndim != 2 or scores.shape[1] < data.classes:
            raise BadInputError(f"the model outputs {'x'.join(map(str, scores.shape[1:]))} scores per image, and the "
                                f"data has {data.classes} classes: top-1 needs one score per class")
        broken = ~np.isfinite(scores).all(axis=1)
        if broken.any():
            raise DataError(f"the model produced NaN or infinite scores for image {start + int(broken.argmax())} "
                            "(and any others in its batch): there is no top-1 to report")
        predictions = scores.argmax(1)
        correct += int((predictions == data.labels[start:start + len(indices)]).sum())
    return {"top1": correct / len(data), "count": len(data)}


def flip_sum_embeddings(run: Runner, images: Sequence[np.ndarray], preprocess: Preprocessing,
                        batch_size: int = 128) -> np.ndarray:
    """insightface: embedding(image) + embedding(horizontally flipped image).

    Returns:
        (N, D) float embeddings, one per image, not normalised.
    """
    parts = []
    for start in range(0, len(images), batch_size):
        batch = preprocess(np.stack([resize_uint8(image, preprocess.input_size) for image in images[start:start + batch_size]]))
        parts.append(run(batch) + run(np.ascontiguousarray(batch[..., ::-1])))
    return np.concatenate(parts)


def verification(run: Runner, pairs: PairSet, preprocess: Preprocessing, image_array: np.ndarray | None = None,
                 batch_size: int = 128, far_target: float = 1e-3) -> VerificationResult:
    """Face verification by the insightface protocol (``foadx.evaluate.verification``): flip-summed
    embeddings of every pair's two images, squared distances after L2 normalisation, 10 folds.

    Args:
        run: (N, C, H, W) batch -> (N, D) embeddings.
        pairs: the pair list (images as encoded bytes, paths, or indices into ``image_array``),
            decoded one image at a time as a batch needs it.
        image_array: the decoded images that integer entries index, as (H, W, C) arrays.
        far_target: the false accept rate (a fraction) at which TAR is reported.

    Raises:
        DataError: an image cannot be decoded or is too large, or fewer pairs than folds (CLI exit code 3).
    """
    embeddings = flip_sum_embeddings(run, pairs.decoded(image_array), preprocess, batch_size)
    return verify_pairs(pair_distances(embeddings), pairs.same, far_target=far_target)
