"""Polygraphy's tolerance semantics, on hand-worked examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from foadx.errors import BadInputError
from foadx.runtime.parity import ZERO_EPSILON, compare_output


def test_hand_worked_example():
    reference = np.array([1.0, 2.0, -4.0, 10.0], dtype=np.float32)
    actual = np.array([1.0, 2.5, -4.1, 10.0], dtype=np.float32)
    # abs errors: 0, 0.5, 0.1, 0      rel errors: 0, 0.25, 0.025, 0
    result = compare_output("y", actual, reference, atol=0.2, rtol=0.1)
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
    assert compare_output("y", actual, reference, atol=0.01, rtol=0.01).passed
    assert compare_output("y", actual, reference, atol=0.0001, rtol=0.001).mismatches == 2


def test_zero_reference_uses_polygraphys_epsilon_and_nan_fails():
    tiny = float(np.float32(1e-20))
    result = compare_output("y", np.array([tiny], np.float32), np.array([0.0], np.float32), atol=0.0, rtol=1.0)
    assert result.max_rel == pytest.approx(tiny / ZERO_EPSILON)  # 4.5e-5: within rtol=1
    assert result.passed
    small = float(np.float32(1e-12))  # relative error 4.5e3 > 1 and absolute 1e-12 > 0: fails
    assert not compare_output("y", np.array([small], np.float32), np.array([0.0], np.float32), 0.0, 1.0).passed
    nan = compare_output("y", np.array([np.nan], np.float32), np.array([1.0], np.float32), atol=1e9, rtol=1e9)
    assert not nan.passed and math.isinf(nan.max_abs)


def test_identical_outputs_need_no_tolerance():
    values = np.linspace(-3, 3, 50, dtype=np.float32)
    result = compare_output("y", values, values.copy(), atol=0.0, rtol=0.0)
    assert result.passed and result.max_abs == 0 and result.smallest_atol == 0 and result.cosine == pytest.approx(1.0)


def test_shape_mismatch_and_negative_tolerances_are_bad_input():
    with pytest.raises(BadInputError, match="shape"):
        compare_output("y", np.zeros((2, 3)), np.zeros((3, 2)), 1e-3, 1e-3)
    with pytest.raises(BadInputError, match=">= 0"):
        compare_output("y", np.zeros(3), np.zeros(3), -1.0, 1e-3)
