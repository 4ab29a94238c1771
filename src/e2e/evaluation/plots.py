"""Plot data for `dvc plots`, derived from the predictions table only (never from the model).

Each plot is a small table on fixed, prediction-independent axes and bins, so `dvc plots diff`
overlays experiments point for point. Rendering is DVC's job (templates in dvc.yaml and .dvc/plots/).
Histograms are densities at the bin centres, drawn as steps by .dvc/plots/step_histogram.json, which
gives every series (each class of the score distribution) its own colour and every revision its own
dash; DVC's simple template colours by revision only, so the classes of one revision would share one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from e2e.evaluation import metrics
from e2e.tasks import TASKS, Task

SCORE_BINS = np.linspace(0.0, 1.0, 41)
RELATIVE_RESIDUAL_BINS = np.linspace(-1.0, 1.0, 51)
N_HIST2D = 25  # bins per axis of predicted vs true
N_PROFILE = 10  # bins of true mass / pT for the resolution curves
PROFILE_BOOTSTRAP = 200  # resamples per bin of those curves: ten bins, each a plot point, not a metric


@dataclass(frozen=True)
class Plot:
    name: str  # file name under plots/custom/ (without .json)
    rows: pd.DataFrame
    x: str
    y: str | list[str]
    template: str
    title: str


def class_names(task: str) -> tuple[str, str]:
    return TASKS[task].classes if task in TASKS else Task.classes


def thin(x: np.ndarray, y: np.ndarray, n_points: int) -> np.ndarray:
    """Indices of ~n_points spaced evenly along the curve's length, ends kept.

    A ROC of a 100k-event test set has ~100k vertices: too many for a browser to overlay, and
    evenly spaced thresholds would waste points on the straight stretches.
    """
    if len(x) <= n_points:
        return np.arange(len(x))
    length = np.r_[0.0, np.cumsum(np.hypot(np.diff(x), np.diff(y)))]
    idx = np.searchsorted(length, np.linspace(0.0, length[-1], n_points), side="left")
    return np.unique(np.r_[0, np.minimum(idx, len(x) - 1), len(x) - 1])


def roc(y, s, n_points: int) -> Plot:
    fpr, tpr, thr = metrics.roc_curve(y, s)
    k = thin(fpr, tpr, n_points)
    # the (0, 0) start has threshold inf, which JSON cannot hold; scores never exceed 1
    rows = pd.DataFrame({"fpr": fpr[k], "tpr": tpr[k], "threshold": np.minimum(thr[k], 1.0)})
    # the exact AUC of every event on each row: .dvc/plots/roc.json puts it in each revision's legend entry
    # (an area computed from the thinned curve in the browser would differ from metrics.json)
    rows["auc"] = metrics.roc_auc(y, s)
    return Plot("roc", rows, "fpr", "tpr", "roc", "ROC")


def rejection(y, s, n_points: int) -> Plot:
    eff = np.linspace(0.05, 1.0, max(n_points // 2, 10))
    rej = metrics.rejection_curve(y, s, eff)
    finite = np.isfinite(rej)  # no background passing at all: nothing to draw on a log axis
    rows = pd.DataFrame({"signal_efficiency": eff[finite], "background_rejection": rej[finite]})
    return Plot(
        "rejection",
        rows,
        "signal_efficiency",
        "background_rejection",
        "log_y",
        "background rejection 1/FPR vs signal efficiency",
    )


def precision_recall(y, s, n_points: int) -> Plot:
    recall, precision = metrics.precision_recall_curve(y, s)
    k = thin(recall, precision, n_points)
    rows = pd.DataFrame({"recall": recall[k], "precision": precision[k]})
    return Plot("precision_recall", rows, "recall", "precision", "simple", "precision vs recall")


def confusion(y, s, names: tuple[str, str]) -> Plot:
    counts = metrics.confusion_counts(y, s)
    rows = pd.DataFrame(
        [{"actual": names[a], "predicted": names[p], "count": int(counts[a, p])} for a in (0, 1) for p in (0, 1)]
    )
    return Plot("confusion", rows, "predicted", "actual", "confusion_counts", "confusion matrix at score 0.5")


def score_distribution(y, s, names: tuple[str, str]) -> Plot:
    centres = (SCORE_BINS[:-1] + SCORE_BINS[1:]) / 2
    rows = pd.DataFrame({"score": centres})
    for k, name in enumerate(names):
        sel = s[y == k]
        rows[name] = np.histogram(sel, SCORE_BINS, density=True)[0] if len(sel) else 0.0
    return Plot("score_distribution", rows, "score", list(names), "step_histogram", "score per true class, density")


def calibration(y, s) -> Plot:
    mean_score, fraction, count = metrics.calibration_curve(y, s, n_bins=10)
    rows = pd.DataFrame({"mean_score": mean_score, "fraction_positive": fraction, "count": count})
    return Plot(
        "calibration",
        rows,
        "mean_score",
        "fraction_positive",
        "simple",
        "calibration (fraction of class 1 vs mean score)",
    )


def classification_plots(test: pd.DataFrame, task: str, roc_points: int) -> list[Plot]:
    y, s = test["truth"].to_numpy().astype(int), test["prediction"].to_numpy().astype(np.float64)
    names = class_names(task)
    return [
        roc(y, s, roc_points),
        rejection(y, s, roc_points),
        precision_recall(y, s, roc_points),
        confusion(y, s, names),
        score_distribution(y, s, names),
        calibration(y, s),
    ]


def axis_edges(values: np.ndarray, n: int) -> np.ndarray:
    """n equal bins over the truth's range, widened to whole units so diffs share the bins and the
    largest value falls inside the last (half-open) bin."""
    lo, hi = np.floor(np.nanmin(values)), np.floor(np.nanmax(values)) + 1.0
    return np.linspace(lo, hi, n + 1)


def pred_vs_true(t: np.ndarray, p: np.ndarray) -> Plot:
    edges = axis_edges(t, N_HIST2D)
    # predictions outside the truth range land in the edge bins rather than vanishing
    counts = np.histogram2d(t, np.clip(p, edges[0], edges[-1]), [edges, edges])[0]
    i, j = np.nonzero(counts)  # sparse: only filled cells travel to the browser
    rows = pd.DataFrame(
        {
            "true_mass": edges[i],
            "true_mass_hi": edges[i + 1],
            "predicted_mass": edges[j],
            "predicted_mass_hi": edges[j + 1],
            "count": counts[i, j].astype(int),
        }
    )
    return Plot(
        "pred_vs_true",
        rows,
        "true_mass",
        "predicted_mass",
        "histogram2d",
        "predicted vs true mass [GeV], events per cell",
    )


def residuals(t: np.ndarray, p: np.ndarray) -> Plot:
    r = np.clip((p - t) / t, RELATIVE_RESIDUAL_BINS[0], RELATIVE_RESIDUAL_BINS[-1])  # overflow in edge bins
    density = np.histogram(r, RELATIVE_RESIDUAL_BINS, density=True)[0]
    centres = (RELATIVE_RESIDUAL_BINS[:-1] + RELATIVE_RESIDUAL_BINS[1:]) / 2
    rows = pd.DataFrame({"relative_residual": centres, "density": density})
    return Plot(
        "residuals",
        rows,
        "relative_residual",
        "density",
        "step_histogram",
        "(predicted - true) / true, density; overflow in the end bins",
    )


def resolution_profile(t: np.ndarray, p: np.ndarray, by: np.ndarray, name: str, label: str) -> Plot:
    """Resolution in bins of `by`, with 95 % bootstrap intervals drawn as error bars (.dvc/plots/binned.json)."""
    rows, edges = [], axis_edges(by, N_PROFILE)
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (by >= lo) & (by < hi)
        if sel.sum() >= 10:  # fewer events give no meaningful interval
            ci = metrics.resolution_interval(t[sel], p[sel], n_boot=PROFILE_BOOTSTRAP, level=0.95)
            rows.append(
                (float((lo + hi) / 2), float(lo), float(hi), metrics.resolution(t[sel], p[sel]), *ci, int(sel.sum()))
            )
    columns = [name, f"{name}_lo", f"{name}_hi", "resolution", "resolution_lo", "resolution_hi", "n"]
    return Plot(
        f"resolution_vs_{name}",
        pd.DataFrame(rows, columns=columns),
        name,
        "resolution",
        "binned",
        f"mass resolution vs {label}, bars: 95 % bootstrap interval",
    )


def regression_plots(test: pd.DataFrame) -> list[Plot]:
    t, p = test["truth"].to_numpy(np.float64), test["prediction"].to_numpy(np.float64)
    out = [pred_vs_true(t, p), residuals(t, p), resolution_profile(t, p, t, "true_mass", "true mass [GeV]")]
    if "pt" in test:
        out.append(resolution_profile(t, p, test["pt"].to_numpy(np.float64), "pt", "jet pT [GeV]"))
    return out
