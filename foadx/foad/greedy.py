"""FOAD's greedy selection (docs/method.md section 3, paper mode) and the exact-count rule (section 5).

Paper mode walks channels in index order; each kept channel removes up to ``t`` of its most
similar still-alive neighbours whose similarity reaches ``s``. The loop over channels is
inherently sequential (whether channel i is alive depends on all earlier choices), so only the
inner work per kept channel is vectorised: one masked row, one stable sort (in numpy, whose
small-array calls cost a quarter of torch's: 8 ms against 29 ms for 512 channels).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor


def _check_square(S: Tensor) -> None:
    """A square, finite S: NaN compares false with every threshold, so on NaN the selection
    loops could never reach their count."""
    if S.dim() != 2 or S.shape[0] != S.shape[1]:
        raise ValueError(f"S must be a square matrix, got shape {tuple(S.shape)}")
    if not bool(torch.isfinite(S).all()):
        raise ValueError("S holds NaN or infinite similarities")


def greedy_select(S: Tensor, t: int, s: float) -> list[int]:
    """Sorted kept channel indices for similarity matrix ``S`` with parameters ``t >= 1, s >= 0``.

    FOAD's greedy selection in paper mode (Shi et al., JCRD 2024; the authors' SSriven/FOAD code;
    docs/method.md section 3): each kept channel i, in index order, removes those of its t most
    similar live channels whose S(i, j) >= s.

    Args:
        S: the (C, C) channel similarity matrix (``channel_similarity``).

    Raises:
        ValueError: ``S`` not square or not finite, ``t`` < 1 or ``s`` < 0.
    """
    _check_square(S)
    if t < 1:
        raise ValueError(f"t must be >= 1, got {t}")
    if s < 0:
        raise ValueError(f"s must be >= 0, got {s}")
    S = S.detach().to("cpu", torch.float64).numpy()
    channels = S.shape[0]
    alive = np.ones(channels, dtype=bool)
    is_kept = np.zeros(channels, dtype=bool)
    for i in range(channels):
        if not alive[i]:
            continue
        is_kept[i] = True
        score = np.where(alive, S[i], 0.0)
        score[i] = 0.0
        order = np.argsort(-score, kind="stable")[:t]  # descending, ties to the lower index
        remove = order[~is_kept[order] & (score[order] >= s)]
        alive[remove] = False
    return np.flatnonzero(is_kept).tolist()


def add_back(S: Tensor, kept: list[int], k: int) -> list[int]:
    """Grows ``kept`` to ``k`` channels, adding the least represented removed channel each time.

    "Least represented" is the removed j with the smallest max over kept i of S(i, j); ties go
    to the lower index (docs/method.md section 5, step 4; also used by ``round_to``).
    """
    _check_square(S)
    S = S.detach().to("cpu", torch.float64)
    channels = S.shape[0]
    if k > channels:
        raise ValueError(f"cannot keep {k} of {channels} channels")
    chosen = torch.zeros(channels, dtype=torch.bool)
    chosen[kept] = True
    if int(chosen.sum()) == 0:
        representation = torch.full((channels,), -math.inf, dtype=torch.float64)
    else:
        representation = S[chosen].max(dim=0).values
    while int(chosen.sum()) < k:
        candidates = torch.where(chosen, torch.full_like(representation, math.inf), representation)
        j = int(torch.argmin(candidates))  # argmin returns the first minimum: lower index wins
        chosen[j] = True
        representation = torch.maximum(representation, S[j])
    return torch.nonzero(chosen).flatten().tolist()


def _distinct_thresholds(S: Tensor) -> Tensor:
    off_diagonal = S[~torch.eye(S.shape[0], dtype=torch.bool)]
    return torch.unique(torch.cat([off_diagonal, torch.zeros(1, dtype=S.dtype)]))


def select_k(S: Tensor, k: int) -> list[int]:
    """Exactly ``k`` kept channels, deterministically, built on paper mode (docs/method.md section 5).

    Takes the (C, C) similarity matrix; returns ``min(k, C)`` sorted channel indices.

    Raises:
        ValueError: ``S`` not square or not finite, or ``k`` < 1.
    """
    _check_square(S)
    S = S.detach().to("cpu", torch.float64)
    channels = S.shape[0]
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if k >= channels:
        return list(range(channels))
    t = max(1, math.ceil(channels / k) - 1)
    while len(greedy_select(S, t, 0.0)) > k:
        t += 1
    values = _distinct_thresholds(S).tolist()
    lo, hi = 0, len(values) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(greedy_select(S, t, values[mid])) <= k:
            lo = mid
        else:
            hi = mid - 1
    kept = greedy_select(S, t, values[lo])
    return add_back(S, kept, k)


def kept_count_for_ratio(channels: int, ratio: float) -> int:
    """k = max(1, C - floor(R * C)) for a removal ratio R in (0, 1) (docs/method.md section 5)."""
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"ratio must be in (0, 1), got {ratio}")
    return max(1, channels - math.floor(ratio * channels))


def round_up_count(count: int, channels: int, round_to: int) -> int:
    """min(C, ceil(k / r) * r): the kept count aligned for tensor cores / int8 packing."""
    if round_to < 1:
        raise ValueError(f"round_to must be >= 1, got {round_to}")
    return min(channels, math.ceil(count / round_to) * round_to)
