"""Polygraphy's tolerance semantics, on hand-worked examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from foadx.errors import BadInputError
from foadx.runtime.parity import ZERO_EPSILON, Tolerances, compare_output, sample_cosines, task_agreement


def elementwise(atol: float, rtol: float) -> Tolerances:
    """Polygraphy's element check alone (no cosine floor, no scale limit)."""
    return Tolerances(atol, rtol, min_cosine=None, max_scaled_error=None)


def test_hand_worked_example():
    reference = np.array([1.0, 2.0, -4.0, 10.0], dtype=np.float32)
    actual = np.array([1.0, 2.5, -4.1, 10.0], dtype=np.float32)
    # abs errors: 0, 0.5, 0.1, 0      rel errors: 0, 0.25, 0.025, 0
    result = compare_output("y", actual, reference, elementwise(0.2, 0.1))
    assert result.max_abs == pytest.approx(0.5)
    assert result.max_rel == pytest.approx(0.25)
    assert result.mean_abs == pytest.approx(0.15, rel=1e-6)
    assert result.mismatches == 1  # only 0.5 / 0.25 exceeds both; 0.1 is within atol
    assert not result.passed
    # smallest atol passing at rtol=0.1: the elements over rtol are {0.5}; at atol=0.2 the
    # elements over atol are {0.25 relative}
    assert result.smallest_atol == pytest.approx(0.5)
    assert result.smallest_rtol == pytest.approx(0.25)
    cosine = float(actual.astype(np.float64) @ reference / (np.linalg.norm(actual.astype(np.float64)) * np.linalg.norm(reference)))
    assert result.cosine == pytest.approx(cosine, abs=1e-12)


def test_an_element_fails_only_when_both_tolerances_are_exceeded():
    reference = np.array([100.0, 0.001], dtype=np.float32)
    actual = np.array([100.5, 0.002], dtype=np.float32)
    # element 0: abs 0.5 > atol but rel 0.005 <= rtol -> passes; element 1: abs 0.001 <= atol -> passes
    assert compare_output("y", actual, reference, elementwise(0.01, 0.01)).passed
    assert compare_output("y", actual, reference, elementwise(0.0001, 0.001)).mismatches == 2


def test_zero_reference_uses_polygraphys_epsilon_and_nan_fails():
    tiny = float(np.float32(1e-20))
    result = compare_output("y", np.array([tiny], np.float32), np.array([0.0], np.float32), elementwise(0.0, 1.0))
    assert result.max_rel == pytest.approx(tiny / ZERO_EPSILON)  # 4.5e-5: within rtol=1
    assert result.passed
    small = float(np.float32(1e-12))  # relative error 4.5e3 > 1 and absolute 1e-12 > 0: fails
    assert not compare_output("y", np.array([small], np.float32), np.array([0.0], np.float32), elementwise(0.0, 1.0)).passed
    nan = compare_output("y", np.array([np.nan], np.float32), np.array([1.0], np.float32), elementwise(1e9, 1e9))
    assert not nan.passed and math.isinf(nan.max_abs)


def test_identical_outputs_need_no_tolerance():
    values = np.linspace(-3, 3, 50, dtype=np.float32)
    result = compare_output("y", values, values.copy(), elementwise(0.0, 0.0))
    assert result.passed and result.max_abs == 0 and result.smallest_atol == 0 and result.cosine == pytest.approx(1.0)


def test_shape_mismatch_and_negative_tolerances_are_bad_input():
    with pytest.raises(BadInputError, match="shape"):
        compare_output("y", np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(BadInputError, match=">= 0"):
        compare_output("y", np.zeros(3), np.zeros(3), elementwise(-1.0, 1e-3))


def test_tolerances_refuse_nan():
    with pytest.raises(BadInputError):
        Tolerances(atol=float("nan"))
    with pytest.raises(BadInputError):
        Tolerances(rtol=float("nan"))


def test_a_wrong_output_of_small_magnitude_fails_by_scale_and_cosine():
    """Outputs ~1e-4: every difference is below atol = 1e-3, so the element check passes; the
    error relative to the output's RMS and the per-sample cosine do not."""
    rng = np.random.default_rng(0)
    reference = (rng.standard_normal((3, 128)) * 1e-4).astype(np.float32)
    wrong = reference.copy()
    wrong[1] = (rng.standard_normal(128) * 1e-4).astype(np.float32)  # sample 1 is another vector
    result = compare_output("e", wrong, reference)  # the fp32 defaults
    assert result.mismatches == 0  # Polygraphy's check alone would pass it
    rms = float(np.sqrt(np.mean(reference.astype(np.float64) ** 2)))
    assert result.rms_reference == pytest.approx(rms)
    assert result.scaled_error == pytest.approx(np.abs(wrong - reference.astype(np.float64)).max() / rms)
    assert result.min_sample_cosine < 0.5 and not result.passed
    assert any("sample 1 has cosine" in failure for failure in result.failures)
    assert any("x the output's RMS" in failure for failure in result.failures)
    assert compare_output("e", reference.copy(), reference).passed


def test_sample_cosines_by_hand():
    actual = np.array([[1.0, 0.0], [0.0, 0.0], [3.0, 4.0], [0.0, 0.0]])
    reference = np.array([[1.0, 1.0], [0.0, 0.0], [-3.0, -4.0], [1.0, 0.0]])
    np.testing.assert_allclose(sample_cosines(actual, reference), [2 ** -0.5, 1.0, -1.0, 0.0])


@pytest.mark.parametrize("stat, atol, passed", [("max", 0.59, False), ("max", 0.61, True), ("mean", 0.1, True),
                                                ("mean", 0.09, False), ("median", 0.0, True),
                                                ("quantile", 0.05, False), ("quantile", 0.6, True)])
def test_error_statistics_by_hand(stat, atol, passed):
    """Absolute errors: eight zeros, 0.4 and 0.6 -> max 0.6, mean 0.1, median 0, 0.95-quantile
    0.51 (numpy's linear interpolation); rtol = 0 so only atol decides (both must be exceeded)."""
    reference = np.ones(10, np.float32)
    actual = reference.copy()
    actual[8] += 0.4
    actual[9] += 0.6
    tolerances = Tolerances(atol, 0.0, None, None, error_stat=stat, error_quantile=0.95)
    result = compare_output("y", actual, reference, tolerances)
    assert result.passed is passed, (result.stat_abs, result.failures)


def test_task_agreement_by_hand():
    logits = np.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.5]])
    flipped = np.array([[2.0, 1.0], [0.0, 3.0], [0.5, 1.0]])
    assert task_agreement(flipped, logits, "classify") == pytest.approx(200 / 3)
    embeddings = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])  # nearest: 1, 0, 1
    moved = np.array([[1.0, 0.0], [0.9, 0.1], [0.95, 0.02]])  # nearest: 2, 2, 0
    assert task_agreement(moved, embeddings, "face") == 0.0
    assert task_agreement(embeddings.copy(), embeddings, "face") == 100.0


def test_each_precision_has_its_own_default_tolerances():
    fp32, bf16, int8 = (Tolerances.for_precision(p) for p in ("fp32", "bf16", "int8"))
    assert (fp32.atol, fp32.rtol, fp32.min_cosine) == (1e-3, 1e-3, 0.9999)
    # bf16: 8 significand bits; a 0.026 difference with cosine 0.99997 (OpenVINO, MobileFaceNet) must pass
    assert (bf16.atol, bf16.rtol, bf16.min_cosine, bf16.max_scaled_error) == (5e-2, 5e-2, 0.999, 2e-2)
    assert int8.atol == int8.rtol == float("inf") and int8.min_cosine == 0.99
    assert Tolerances.for_precision("bf16", atol=1e-3).atol == 1e-3  # an explicit tolerance still wins
