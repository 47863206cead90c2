"""Evaluation: top-1 for classification, the insightface 10-fold protocol for face verification."""

from foadx.evaluate.api import Preprocessing, flip_sum_embeddings, top1, verification
from foadx.evaluate.verification import VerificationResult, pair_distances, verify_pairs

__all__ = [
    "Preprocessing",
    "VerificationResult",
    "flip_sum_embeddings",
    "pair_distances",
    "top1",
    "verification",
    "verify_pairs",
]
