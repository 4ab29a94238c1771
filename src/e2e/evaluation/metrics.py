"""Pure-numpy metrics, keyed by name. Scores are probabilities of class 1; estimates are in physical units."""

from __future__ import annotations

import warnings

import numpy as np

# the test metrics that the stage logs and `e2e summary` show, where a task has them
HEADLINE = ("roc_auc", "accuracy", "oracle_auc", "mae", "mae_of_training_mean", "mean_relative_error", "resolution")


def roc_curve(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) at every distinct score, highest threshold first."""
    order = np.argsort(-score, kind="mergesort")
    y, score = np.asarray(y)[order], np.asarray(score)[order]
    distinct = np.r_[np.flatnonzero(np.diff(score)), len(score) - 1]  # last index of each tied run
    tps = np.cumsum(y)[distinct]
    fps = (distinct + 1) - tps
    P, N = max(tps[-1], 1), max(fps[-1], 1)
    return np.r_[0.0, fps / N], np.r_[0.0, tps / P], np.r_[np.inf, score[distinct]]


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    fpr, tpr, _ = roc_curve(y, score)
    return float(np.trapezoid(tpr, fpr))


def accuracy(y: np.ndarray, score: np.ndarray, threshold: float = 0.5) -> float:
    return float(np.mean((score >= threshold) == (y > 0.5)))


def log_loss(y: np.ndarray, score: np.ndarray, eps: float = 1e-7) -> float:
    p = np.clip(score, eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def background_rejection(y: np.ndarray, score: np.ndarray, signal_efficiency: float) -> float:
    """1/FPR at the first threshold reaching the signal efficiency (class 1 is the signal)."""
    fpr, tpr, _ = roc_curve(y, score)
    i = int(np.searchsorted(tpr, signal_efficiency, side="left"))
    f = fpr[min(i, len(fpr) - 1)]
    return float(1.0 / f) if f > 0 else float("inf")


def mae(true: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(np.abs(pred - true)))


def rmse(true: np.ndarray, pred: np.ndarray) -> float:
    return float(np.sqrt(np.mean((pred - true) ** 2)))


def mean_relative_error(true: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(np.abs(pred - true) / np.abs(true)))


def resolution(true: np.ndarray, pred: np.ndarray) -> float:
    """Half-width of the central 68 % interval of (pred - true)/true: robust to tails, unlike an RMS."""
    r = (pred - true) / true
    lo, hi = np.quantile(r, [0.16, 0.84])
    return float((hi - lo) / 2)


def binned(fn, true: np.ndarray, pred: np.ndarray, by: np.ndarray, edges: np.ndarray) -> list[dict]:
    """fn(true, pred) in bins of `by` (true mass, pT, ...); bins with fewer than 10 events are skipped."""
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (by >= lo) & (by < hi)
        if sel.sum() >= 10:
            out.append({"lo": float(lo), "hi": float(hi), "n": int(sel.sum()), "value": fn(true[sel], pred[sel])})
    return out


def rejection_curve(y: np.ndarray, score: np.ndarray, efficiencies: np.ndarray) -> np.ndarray:
    """background_rejection at each signal efficiency (inf where no background passes)."""
    fpr, tpr, _ = roc_curve(y, score)
    f = fpr[np.minimum(np.searchsorted(tpr, efficiencies, side="left"), len(fpr) - 1)]
    with np.errstate(divide="ignore"):
        return np.where(f > 0, 1.0 / f, np.inf)


def precision_recall_curve(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) at every distinct threshold, highest threshold first (the (0, 0) start dropped)."""
    fpr, tpr, _ = roc_curve(y, score)
    y = np.asarray(y)
    tps, fps = tpr[1:] * max(y.sum(), 1), fpr[1:] * max((1 - y).sum(), 1)
    return tpr[1:], tps / np.maximum(tps + fps, 1e-12)


def calibration_curve(y: np.ndarray, score: np.ndarray, n_bins: int = 10) -> tuple[np.ndarray, ...]:
    """(mean score, fraction of class 1, count) in the non-empty ones of n_bins uniform score bins."""
    # right-closed bins, as sklearn.calibration.calibration_curve, so the two agree on tied scores
    b = np.searchsorted(np.linspace(0.0, 1.0, n_bins + 1)[1:-1], score)
    count = np.bincount(b, minlength=n_bins)
    keep = count > 0
    mean_score = np.bincount(b, score, n_bins)[keep] / count[keep]
    return mean_score, np.bincount(b, y, n_bins)[keep] / count[keep], count[keep]


def confusion_counts(y: np.ndarray, score: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """2x2 counts [actual, predicted]: an aggregated table, never one row per event."""
    actual, predicted = (np.asarray(y) > 0.5).astype(int), (np.asarray(score) >= threshold).astype(int)
    return np.bincount(2 * actual + predicted, minlength=4).reshape(2, 2)


def bootstrap_intervals(
    stat, n: int, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile intervals of each value of a vector statistic stat(counts), over resamples with
    replacement of n events: several statistics of the same events share the draws (one per resample).

    stat takes the per-event draw counts (weights) rather than resampled arrays, so a statistic that
    sorts (AUC) sorts once, not once per resample. A fixed seed keeps re-evaluations identical for DVC.
    """
    if n == 0:
        return np.full(1, np.nan), np.full(1, np.nan)
    rng = np.random.default_rng(seed)
    values = np.array([stat(np.bincount(rng.integers(0, n, n), minlength=n)) for _ in range(n_boot)], np.float64)
    with warnings.catch_warnings():  # a value no resample defines (every draw one-class) is NaN, silently
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanquantile(values.reshape(n_boot, -1), [(1 - level) / 2, (1 + level) / 2], axis=0)
    return lo, hi


def bootstrap_interval(stat, n: int, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """bootstrap_intervals of a scalar statistic."""
    lo, hi = bootstrap_intervals(stat, n, n_boot, level, seed)
    return float(lo[0]), float(hi[0])


def _class_weights(y: np.ndarray, score: np.ndarray):
    """(w -> (class-1, class-0) weight per tie group in ascending score order): the sort, done once."""
    y = np.asarray(y, dtype=np.float64)
    _, group = np.unique(np.asarray(score), return_inverse=True)
    n_groups = int(group.max()) + 1 if len(group) else 0
    return lambda w: (np.bincount(group, w * y, n_groups), np.bincount(group, w * (1 - y), n_groups))


def _auc_of_groups(pos: np.ndarray, neg: np.ndarray) -> float:
    below = np.cumsum(neg) - neg
    denom = pos.sum() * neg.sum()
    return float(np.sum(pos * (below + 0.5 * neg)) / denom) if denom > 0 else float("nan")


def _fpr_of_groups(pos: np.ndarray, neg: np.ndarray, efficiencies: np.ndarray) -> np.ndarray:
    """background_rejection's FPR (first threshold from the top reaching each signal efficiency)."""
    tp, fp = np.cumsum(pos[::-1]), np.cumsum(neg[::-1])
    if tp.size == 0 or tp[-1] <= 0 or fp[-1] <= 0:
        return np.full(len(efficiencies), np.nan)
    i = np.minimum(np.searchsorted(tp / tp[-1], efficiencies, side="left"), len(tp) - 1)
    return fp[i] / fp[-1]


def roc_auc_statistic(y: np.ndarray, score: np.ndarray):
    """stat(counts) -> ROC-AUC of the events drawn counts[i] times each: the Mann-Whitney statistic
    with ties counted one half, i.e. the trapezoid AUC of roc_curve. Sorts once for all resamples."""
    groups = _class_weights(y, score)
    return lambda w: _auc_of_groups(*groups(w))


def classifier_statistic(y: np.ndarray, score: np.ndarray, efficiencies):
    """stat(counts) -> [ROC-AUC, FPR at each signal efficiency] of the weighted events, with the
    threshold found anew in each resample (as a per-bin threshold would be). The FPR, not 1/FPR: a
    resample with no background passing has rejection inf, which no percentile interpolates."""
    groups, eff = _class_weights(y, score), np.asarray(efficiencies, np.float64)

    def stat(w: np.ndarray) -> np.ndarray:
        pos, neg = groups(w)
        return np.r_[_auc_of_groups(pos, neg), _fpr_of_groups(pos, neg, eff)]

    return stat


def threshold_at_efficiency(y: np.ndarray, score: np.ndarray, signal_efficiency: float) -> float:
    """The score cut (pass: score >= cut) at which background_rejection is measured."""
    _, tpr, thr = roc_curve(y, score)
    return float(thr[min(int(np.searchsorted(tpr, signal_efficiency, side="left")), len(thr) - 1)])


def roc_auc_interval(y: np.ndarray, score: np.ndarray, **kw) -> tuple[float, float]:
    return bootstrap_interval(roc_auc_statistic(y, score), len(y), **kw)


def mae_statistic(true: np.ndarray, pred: np.ndarray):
    """stat(counts) -> MAE of the events drawn counts[i] times each."""
    err = np.abs(np.asarray(pred) - np.asarray(true))
    return lambda w: float(np.sum(w * err) / np.sum(w))


def mae_interval(true: np.ndarray, pred: np.ndarray, **kw) -> tuple[float, float]:
    return bootstrap_interval(mae_statistic(true, pred), len(true), **kw)


PAIRED_STATISTICS = {"roc_auc": roc_auc_statistic, "mae": mae_statistic}


def paired_difference_interval(
    metric: str, truth: np.ndarray, base: np.ndarray, head: np.ndarray, **kw
) -> tuple[float, float]:
    """Bootstrap interval of metric(truth, head) - metric(truth, base) over the same events: each resample
    draws one set of events for both predictions, so what the two share (the events' difficulty) cancels
    and the interval is far narrower than the two separate intervals suggest. metric: a PAIRED_STATISTICS
    key; kw: bootstrap_interval's n_boot, level, seed."""
    stat_base, stat_head = PAIRED_STATISTICS[metric](truth, base), PAIRED_STATISTICS[metric](truth, head)
    return bootstrap_interval(lambda w: stat_head(w) - stat_base(w), len(truth), **kw)


def weighted_quantiles(sorted_values: np.ndarray, counts: np.ndarray, qs) -> np.ndarray:
    """np.quantile(np.repeat(sorted_values, counts), qs) (linear interpolation) without the repeat."""
    cum = np.cumsum(counts)
    pos = np.asarray(qs, np.float64) * (cum[-1] - 1)
    k = np.floor(pos).astype(np.int64)
    lo = sorted_values[np.searchsorted(cum, k, side="right")]
    hi = sorted_values[np.searchsorted(cum, np.minimum(k + 1, cum[-1] - 1), side="right")]
    return lo + (pos - k) * (hi - lo)


def weighted_quantile(sorted_values: np.ndarray, counts: np.ndarray, q: float) -> float:
    return float(weighted_quantiles(sorted_values, counts, [q])[0])


def resolution_interval(true: np.ndarray, pred: np.ndarray, **kw) -> tuple[float, float]:
    # resampling draws events independently of their order, so sort once and resample the sorted values
    r = np.sort((np.asarray(pred) - np.asarray(true)) / np.asarray(true))

    def stat(w: np.ndarray) -> float:
        return (weighted_quantile(r, w, 0.84) - weighted_quantile(r, w, 0.16)) / 2

    return bootstrap_interval(stat, len(r), **kw)


def response(true: np.ndarray, pred: np.ndarray) -> float:
    """Median of pred/true: the mass scale (1: unbiased), robust to tails like resolution."""
    return float(np.median(np.asarray(pred) / np.asarray(true)))


def response_statistic(true: np.ndarray, pred: np.ndarray):
    """stat(counts) -> [response, resolution] of the weighted events; (pred - true)/true is pred/true - 1,
    and a shift leaves resolution's quantile difference alone, so one sorted ratio serves both."""
    r = np.sort(np.asarray(pred) / np.asarray(true))

    def stat(w: np.ndarray) -> np.ndarray:
        q16, q50, q84 = weighted_quantiles(r, w, (0.16, 0.5, 0.84))
        return np.array([q50, (q84 - q16) / 2])

    return stat


CLASSIFICATION = {"roc_auc": roc_auc, "accuracy": accuracy, "log_loss": log_loss}
REGRESSION = {"mae": mae, "rmse": rmse, "mean_relative_error": mean_relative_error, "resolution": resolution}
METRICS = {**CLASSIFICATION, **REGRESSION}
