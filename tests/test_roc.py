"""foadx.evaluate.roc: TAR at FAR, EER and AUC on a hand-worked 10-pair example, against
scikit-learn's roc_curve on the same scores, and the histogram mode's stated error bound."""

import numpy as np
import pytest

from foadx.errors import DataError
from foadx.evaluate.roc import BIN_WIDTH, ScoreCounter, allowed_false_accepts, roc_metrics

# sorted: 0.1i 0.2i 0.3g 0.4i 0.5i 0.55g 0.6g 0.7i 0.8g 0.9g (g genuine, i impostor)
GENUINE = np.array([0.9, 0.8, 0.6, 0.55, 0.3])
IMPOSTOR = np.array([0.7, 0.5, 0.4, 0.2, 0.1])


def test_hand_worked_ten_pairs():
    result = roc_metrics(GENUINE, IMPOSTOR, far_points=(0.1, 0.2, 0.4, 0.6))
    assert (result.genuine, result.impostor, result.mode) == (5, 5, "exact")
    unmeasurable = result.point(0.1)
    assert not unmeasurable.measurable and unmeasurable.reason == "5 impostor pairs; FAR 0.1 needs at least 10"
    # FAR 0.2: one false accept allowed -> threshold is the 2nd highest impostor score, 0.5;
    # accepted (score > 0.5): genuine 0.9 0.8 0.6 0.55, impostor 0.7
    point = result.point(0.2)
    assert (point.threshold, point.tar, point.far) == (pytest.approx(0.5), 0.8, 0.2)
    point = result.point(0.4)  # two allowed: threshold 0.4, 0.3 is still rejected
    assert (point.threshold, point.tar, point.far) == (pytest.approx(0.4), 0.8, 0.4)
    point = result.point(0.6)  # three allowed: threshold 0.2, every genuine accepted
    assert (point.threshold, point.tar, point.far) == (pytest.approx(0.2), 1.0, 0.6)
    # at threshold 0.5: FAR 1/5 (0.7), FRR 1/5 (0.3): the only threshold where they meet
    assert result.eer == 0.2 and result.eer_threshold == pytest.approx(0.5)
    # impostors each genuine beats: 0.9 all 5, 0.8 all 5, 0.6 four, 0.55 four, 0.3 two: 20 of 25
    assert result.auc == pytest.approx(20 / 25, abs=1e-15)


def test_ties_are_rejected_and_count_half_in_auc():
    result = roc_metrics(np.array([0.5]), np.array([0.5, 0.1]), far_points=(0.5,))
    point = result.point(0.5)  # one false accept allowed: threshold 0.1; 0.5 > 0.1 accepted
    assert (point.threshold, point.tar, point.far) == (pytest.approx(0.1), 1.0, 0.5)
    assert result.auc == 0.75  # (1 beaten + 1/2 tie) / 2


def test_far_is_read_as_its_decimal():
    assert allowed_false_accepts(1e-4, 30_000) == 3  # 1e-4 * 30000 is 2.9999999999999996 in floats
    assert allowed_false_accepts(1e-3, 999) == 0


def test_against_sklearn_roc_curve():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    genuine = rng.normal(0.6, 0.15, 3_000).astype(np.float32)
    impostor = rng.normal(0.0, 0.15, 40_000).astype(np.float32)
    result = roc_metrics(genuine, impostor)
    labels = np.r_[np.ones(len(genuine)), np.zeros(len(impostor))]
    fpr, tpr, _ = sklearn_metrics.roc_curve(labels, np.r_[genuine, impostor], drop_intermediate=False)
    false_accepts = np.round(fpr * len(impostor))
    for point in result.points:
        allowed = allowed_false_accepts(point.far_target, len(impostor))
        assert point.measurable == (allowed >= 1)
        if point.measurable:
            assert point.tar == pytest.approx(tpr[false_accepts <= allowed].max(), abs=1e-12)
            assert point.threshold == float(np.sort(impostor)[::-1][allowed])
    assert [p.far_target for p in result.points if not p.measurable] == [1e-5, 1e-6]
    fnr = 1 - tpr
    best = np.argmin(np.abs(fnr - fpr))
    assert result.eer == pytest.approx((fpr[best] + fnr[best]) / 2, abs=1e-12)
    assert result.auc == pytest.approx(sklearn_metrics.roc_auc_score(labels, np.r_[genuine, impostor]), abs=1e-12)


def test_histogram_mode_stays_within_its_stated_bound():
    rng = np.random.default_rng(1)
    genuine = np.clip(rng.normal(0.5, 0.2, 20_000), -1, 1).astype(np.float32)
    impostor = np.clip(rng.normal(0.0, 0.2, 200_000), -1, 1).astype(np.float32)
    exact = roc_metrics(genuine, impostor)
    counter = ScoreCounter(exact_limit=50_000)
    for start in range(0, 200_000, 20_000):  # blocks, the switch to histograms happening mid-way
        counter.add(genuine[start // 10:(start + 20_000) // 10], impostor[start:start + 20_000])
    binned = counter.result()
    assert binned.mode == "histogram" and binned.bin_width == BIN_WIDTH
    assert (binned.genuine, binned.impostor) == (20_000, 200_000)
    for approximate, reference in zip(binned.points, exact.points):
        assert approximate.measurable == reference.measurable
        if reference.measurable:
            assert approximate.far <= approximate.far_target
            assert reference.threshold <= approximate.threshold < reference.threshold + BIN_WIDTH + 1e-7
            assert reference.tar - approximate.tar_error_bound - 1e-12 <= approximate.tar <= reference.tar
    assert binned.auc == pytest.approx(exact.auc, abs=1e-4)
    assert binned.eer == pytest.approx(exact.eer, abs=1e-3)


@pytest.mark.parametrize("genuine, impostor, message", [
    (np.array([0.5]), np.zeros(0), "1 genuine and 0 impostor pairs"),
    (np.zeros(0), np.array([0.5]), "0 genuine and 1 impostor pairs"),
    (np.array([np.nan, 0.2]), np.array([0.1]), "1 similarity scores are NaN or infinite"),
])
def test_refusals(genuine, impostor, message):
    with pytest.raises(DataError, match=message):
        roc_metrics(genuine, impostor)
