"""Our numpy metrics against scikit-learn, including ties and edge cases."""

import numpy as np
import pytest
from sklearn import metrics as skm

from e2e.evaluation import metrics

from support.scores import two_models  # noqa: F401 (a fixture: labels, a base's scores, a better head's)


@pytest.fixture
def scored():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000).astype(float)
    s = np.clip(rng.normal(0.4 + 0.2 * y, 0.2), 0, 1).round(2)  # rounding makes many ties
    return y, s


def test_roc_auc_matches_sklearn_with_ties(scored):
    y, s = scored
    assert metrics.roc_auc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)


def test_roc_curve_ends_at_corners(scored):
    fpr, tpr, thr = metrics.roc_curve(*scored)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)


def test_accuracy_and_log_loss_match_sklearn(scored):
    y, s = scored
    assert metrics.accuracy(y, s) == pytest.approx(skm.accuracy_score(y, s >= 0.5))
    assert metrics.log_loss(y, s) == pytest.approx(skm.log_loss(y, np.clip(s, 1e-7, 1 - 1e-7)), rel=1e-6)


def test_background_rejection_is_inverse_fpr_at_efficiency():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0], float)
    s = np.array([0.9, 0.8, 0.7, 0.2, 0.75, 0.3, 0.1, 0.05])
    # 50 % signal efficiency is reached at threshold 0.8 with no background passing
    assert metrics.background_rejection(y, s, 0.5) == float("inf")
    # 75 %: threshold 0.7 passes one background (0.75) of four -> rejection 4
    assert metrics.background_rejection(y, s, 0.75) == pytest.approx(4.0)


def test_regression_metrics():
    t = np.array([100.0, 200.0, 300.0, 400.0])
    p = np.array([110.0, 190.0, 330.0, 400.0])
    assert metrics.mae(t, p) == pytest.approx(12.5)
    assert metrics.rmse(t, p) == pytest.approx(np.sqrt((100 + 100 + 900) / 4))
    assert metrics.mean_relative_error(t, p) == pytest.approx((0.1 + 0.05 + 0.1 + 0) / 4)
    rng = np.random.default_rng(1)
    t = rng.uniform(100, 500, 20000)
    p = t * (1 + rng.normal(0, 0.1, t.size))
    assert metrics.resolution(t, p) == pytest.approx(0.1, rel=0.05)


def test_binned_skips_sparse_bins():
    t = np.linspace(100, 200, 100)
    out = metrics.binned(metrics.mae, t, t + 1, t, np.array([100, 150, 201, 1000]))
    assert [b["n"] for b in out] == [50, 50]
    assert all(b["value"] == pytest.approx(1.0) for b in out)


def test_paired_difference_of_identical_predictions_is_exactly_zero(two_models):
    y, base, _ = two_models
    assert metrics.paired_difference_interval("roc_auc", y, base, base.copy(), n_boot=200) == (0.0, 0.0)


def test_paired_difference_finds_a_small_gain_the_separate_intervals_cannot(two_models):
    """The point of pairing: the head's gain (about +0.017) lies well inside both models' own 95 %
    intervals, which overlap, yet drawing the same events for both resolves it. Unpaired draws (two
    seeds) would give an interval about 30 times as wide that contains zero."""
    y, base, head = two_models
    diff = metrics.roc_auc(y, head) - metrics.roc_auc(y, base)
    lo, hi = metrics.paired_difference_interval("roc_auc", y, base, head, n_boot=300)
    assert 0 < lo < diff < hi < 2 * diff
    _, base_hi = metrics.roc_auc_interval(y, base, n_boot=300)
    head_lo, _ = metrics.roc_auc_interval(y, head, n_boot=300)
    assert head_lo < base_hi  # apart, the two intervals cannot tell the models apart


def test_paired_difference_of_an_equally_good_model_contains_zero(two_models):
    """A shuffled copy: the base's scores permuted within each class have exactly its AUC but rank the
    events differently, so the difference fluctuates around zero from resample to resample."""
    y, base, _ = two_models
    rng = np.random.default_rng(2)
    shuffled = base.copy()
    for cls in (0, 1):
        idx = np.flatnonzero(y == cls)
        shuffled[idx] = rng.permutation(base[idx])
    lo, hi = metrics.paired_difference_interval("roc_auc", y, base, shuffled, n_boot=300)
    assert lo < 0 < hi and hi - lo > 0.01


def test_paired_mae_difference_of_a_better_regressor_is_below_zero():
    rng = np.random.default_rng(3)
    true = rng.uniform(85, 500, 2000)
    base = true * rng.normal(1, 0.1, 2000)
    head = true + 0.95 * (base - true)  # every error 5 % smaller
    lo, hi = metrics.paired_difference_interval("mae", true, base, head, n_boot=300)
    assert lo < metrics.mae(true, head) - metrics.mae(true, base) < hi < 0
    assert metrics.paired_difference_interval("mae", true, base, head, n_boot=300) == (lo, hi)  # fixed seed
