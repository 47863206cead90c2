"""Evaluation: top-1 for classification, the insightface 10-fold protocol for face verification."""

from foadx.evaluate.verification import VerificationResult, pair_distances, verify_pairs

__all__ = ["VerificationResult", "pair_distances", "verify_pairs"]
