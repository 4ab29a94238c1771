"""Pure-numpy metrics, keyed by name. Scores are probabilities of class 1; estimates are in physical units."""
from __future__ import annotations

import numpy as np


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


CLASSIFICATION = {"roc_auc": roc_auc, "accuracy": accuracy, "log_loss": log_loss}
REGRESSION = {"mae": mae, "rmse": rmse, "mean_relative_error": mean_relative_error, "resolution": resolution}
METRICS = {**CLASSIFICATION, **REGRESSION}
