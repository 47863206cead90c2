"""docs/method.md section 2: S equals the per-pair definition, streams exactly, scores dead channels 1."""

from __future__ import annotations

import numpy as np
import torch

from foadx.foad import SimilarityAccumulator, channel_similarity


def per_pair_similarity(maps: np.ndarray) -> np.ndarray:
    N, C = maps.shape[:2]
    flat = maps.reshape(N, C, -1).astype(np.float64)
    S = np.zeros((C, C))
    for n in range(N):
        for i in range(C):
            for j in range(C):
                S[i, j] += 1.0 / (1.0 + np.sqrt(np.sum((flat[n, i] - flat[n, j]) ** 2)))
    return S / N


def relu_maps(seed: int, shape=(6, 9, 5, 7)) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.relu(torch.randn(*shape, generator=generator))


def test_equals_per_pair_definition_with_dead_channels():
    maps = relu_maps(0)
    maps[:, 2] = 0.0
    maps[:, 5] = 0.0
    S = channel_similarity(maps)
    expected = per_pair_similarity(maps.numpy())
    assert S.dtype == torch.float64
    np.testing.assert_allclose(S.numpy(), expected, rtol=1e-12, atol=1e-12)
    assert S[2, 5] == 1.0 and S[5, 2] == 1.0
    assert torch.all(S.diagonal() == 1.0)
    assert torch.equal(S, S.T)
    off = S[~torch.eye(9, dtype=torch.bool)]
    assert float(off[(off != 1.0)].max()) < 1.0


def test_identical_maps_score_exactly_one_with_many_channels():
    # More than 25 rows: where cdist's matrix-multiply shortcut loses exactness.
    maps = relu_maps(1, (3, 40, 14, 14)) * 50.0
    maps[:, 33] = maps[:, 4]
    S = channel_similarity(maps)
    assert S[4, 33] == 1.0


def test_mean_of_per_image_similarity_not_of_distances():
    maps = torch.zeros(2, 2, 1, 1)
    maps[0, 1] = 1.0  # distance 1 on image 0, 3 on image 1
    maps[1, 1] = 3.0
    S = channel_similarity(maps)
    assert abs(float(S[0, 1]) - (0.5 * (1 / 2) + 0.5 * (1 / 4))) < 1e-15


def test_streaming_equals_one_batch():
    maps = relu_maps(2, (11, 8, 6, 6))
    whole = channel_similarity(maps)
    accumulator = SimilarityAccumulator(8)
    for start in range(0, 11, 3):
        accumulator.add([maps[start : start + 3]])
    assert accumulator.images == 11
    torch.testing.assert_close(accumulator.similarity(), whole, rtol=1e-13, atol=1e-13)


def test_coupled_members_combine_squared_distances():
    a, b = relu_maps(3, (4, 5, 3, 3)), relu_maps(4, (4, 5, 2, 2))
    accumulator = SimilarityAccumulator(5)
    accumulator.add([a, b])
    joined = torch.cat([a.flatten(2), b.flatten(2)], dim=2)  # concatenated maps
    torch.testing.assert_close(accumulator.similarity(), channel_similarity(joined), rtol=1e-12, atol=1e-12)
