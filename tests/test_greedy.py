"""docs/method.md section 3 (paper-mode greedy) and section 5 (select_k), by hand and against loops."""

from __future__ import annotations

import math
import random

import pytest
import torch

from foadx.foad import add_back, greedy_select, kept_count_for_ratio, round_up_count, select_k


def reference_greedy(S: list[list[float]], t: int, s: float) -> list[int]:
    """docs/method.md section 3 as written: a plain loop, a stable sort, no vectorisation."""
    C = len(S)
    alive = [True] * C
    kept: list[int] = []
    for i in range(C):
        if not alive[i]:
            continue
        kept.append(i)
        score = [S[i][j] if alive[j] and j != i else 0.0 for j in range(C)]
        order = sorted(range(C), key=lambda j: -score[j])  # Python's sort is stable
        for j in order[:t]:
            if j not in kept and score[j] >= s:
                alive[j] = False
    return sorted(kept)


def reference_select_k(S: list[list[float]], k: int) -> list[int]:
    """docs/method.md section 5 as written, on the reference greedy."""
    C = len(S)
    if k >= C:
        return list(range(C))
    t = max(1, math.ceil(C / k) - 1)
    while len(reference_greedy(S, t, 0.0)) > k:
        t += 1
    v = sorted({0.0} | {S[i][j] for i in range(C) for j in range(C) if i != j})
    lo, hi = 0, len(v) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(reference_greedy(S, t, v[mid])) <= k:
            lo = mid
        else:
            hi = mid - 1
    K = reference_greedy(S, t, v[lo])
    while len(K) < k:
        removed = [j for j in range(C) if j not in K]
        j = min(removed, key=lambda j: (max(S[i][j] for i in K), j))
        K.append(j)
    return sorted(K)


def random_similarity(C: int, rng: random.Random, levels: int) -> list[list[float]]:
    """Symmetric, unit diagonal, values on a coarse grid so that ties are frequent."""
    S = [[1.0] * C for _ in range(C)]
    for i in range(C):
        for j in range(i + 1, C):
            S[i][j] = S[j][i] = rng.randint(1, levels) / (levels + 1)
    return S


EXAMPLE = torch.tensor([
    [1.0, 0.9, 0.2, 0.8],
    [0.9, 1.0, 0.7, 0.1],
    [0.2, 0.7, 1.0, 0.3],
    [0.8, 0.1, 0.3, 1.0],
], dtype=torch.float64)


def test_hand_worked_t1_threshold():
    # i=0 removes 1 (0.9); i=2's best alive neighbour is 3 at 0.3 < 0.5: nothing; i=3 kept.
    assert greedy_select(EXAMPLE, t=1, s=0.5) == [0, 2, 3]


def test_hand_worked_t2_removes_two_neighbours():
    # i=0 removes 1 (0.9) and 3 (0.8); i=2 is kept.
    assert greedy_select(EXAMPLE, t=2, s=0.5) == [0, 2]


def test_threshold_blocks_removal():
    assert greedy_select(EXAMPLE, t=2, s=0.95) == [0, 1, 2, 3]
    assert greedy_select(EXAMPLE, t=1, s=0.9) == [0, 2, 3]  # 0.9 >= 0.9 removes


def test_already_kept_neighbour_uses_up_a_slot():
    # i=0 removes 1. For i=2 the top score belongs to channel 0, already kept: that slot is
    # spent and channel 3 (0.05) survives; skipping kept channels would wrongly remove 3.
    S = torch.tensor([
        [1.0, 0.6, 0.1, 0.1],
        [0.6, 1.0, 0.3, 0.2],
        [0.1, 0.3, 1.0, 0.05],
        [0.1, 0.2, 0.05, 1.0],
    ])
    assert greedy_select(S, t=1, s=0.0) == [0, 2, 3]


def test_ties_go_to_lower_index():
    S = torch.full((4, 4), 0.5).fill_diagonal_(1.0)
    # t=1: 0 removes 1 (lowest of the tied 1, 2, 3); for 2 the tie between 0 and 3 goes to 0,
    # already kept, so 3 survives.
    assert greedy_select(S, t=1, s=0.0) == [0, 2, 3]
    assert greedy_select(S, t=2, s=0.0) == [0, 3]  # 0 removes 1, 2; 3 is left


def test_channel_zero_kept_and_t_bound():
    rng = random.Random(1)
    for _ in range(50):
        C = rng.randint(2, 30)
        t = rng.randint(1, 5)
        kept = greedy_select(torch.tensor(random_similarity(C, rng, 4)), t, 0.0)
        assert kept[0] == 0
        assert len(kept) >= C / (t + 1)


def test_zero_score_placeholder_is_a_no_op():
    # C=2, t=3 > C: the self slot and nothing else; channel 1 is removed by channel 0.
    assert greedy_select(torch.tensor([[1.0, 0.2], [0.2, 1.0]]), t=3, s=0.0) == [0]


def test_matches_reference_loop_on_random_matrices_with_ties():
    rng = random.Random(7)
    for _ in range(300):
        C = rng.randint(1, 24)
        S = random_similarity(C, rng, rng.choice([2, 3, 10]))
        t = rng.randint(1, 4)
        s = rng.choice([0.0, 0.25, 0.5, 0.75, rng.random()])
        assert greedy_select(torch.tensor(S, dtype=torch.float64), t, s) == reference_greedy(S, t, s)


def test_select_k_exact_and_equal_to_reference():
    rng = random.Random(3)
    for _ in range(60):
        C = rng.randint(2, 20)
        S = random_similarity(C, rng, rng.choice([3, 50]))
        k = rng.randint(1, C)
        chosen = select_k(torch.tensor(S, dtype=torch.float64), k)
        assert len(chosen) == k
        assert chosen == reference_select_k(S, k)


def test_add_back_least_represented_first():
    S = EXAMPLE
    # Kept [0]: representation of 1, 2, 3 is 0.9, 0.2, 0.8 -> add 2 first, then 3.
    assert add_back(S, [0], 2) == [0, 2]
    assert add_back(S, [0], 3) == [0, 2, 3]


def test_budget_arithmetic():
    assert kept_count_for_ratio(64, 0.3) == 64 - 19
    assert kept_count_for_ratio(3, 0.9) == 1
    assert round_up_count(45, 64, 8) == 48
    assert round_up_count(61, 64, 8) == 64
    with pytest.raises(ValueError):
        kept_count_for_ratio(64, 1.0)
    with pytest.raises(ValueError):
        round_up_count(4, 8, 0)
