"""Performance in bins of the physics (params `evaluate.bins`), on the test split: the metrics of each bin
for metrics.json (their plot tables: e2e.evaluation.binned_plots).

A variable is any column of the predictions table (observers such as pt, truth_* columns, and for the
electron/photon crops the energy_total and energy_max computed here). Its bins are the edges given in
params, or n equal-width bins over the test split's range widened to whole units (plots.axis_edges).
Bins are [lo, hi) except the last, [lo, hi]; events outside every bin are left out.

Classifiers: per bin, ROC-AUC and background rejection 1/FPR at each working point with the bin's own
threshold (a flat signal efficiency across bins), with bootstrap intervals. The plots also show the
signal efficiency and rejection of one global threshold per working point, which is how a cut is used.
Regression: per bin, the response median(pred/true) and the resolution (metrics.resolution).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from e2e.errors import E2EError
from e2e.evaluation import metrics
from e2e.evaluation.plots import axis_edges

if TYPE_CHECKING:
    from e2e.config import EvaluateParams
    from e2e.store.sparse import SparseImages
    from e2e.tasks import Task

MIN_EVENTS = 10  # as metrics.binned: fewer events give no meaningful value or interval
LEVEL = 0.95  # every interval of metrics.json and of the binned plots' error bars
ENERGY_CHANNEL = "energy"  # the converted channel whose crop totals become energy_total and energy_max


def rejection_key(efficiency: float) -> str:
    return f"rejection_at_{int(round(100 * efficiency))}"


def bin_key(lo: float, hi: float) -> str:
    """Keys like "60-75" and "0-0.45": compact and the same in every run, so `dvc exp show` columns line up."""
    return f"{lo:g}-{hi:g}"


def bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Each value's bin, -1 outside all of them (NaN too); the last bin includes its upper edge."""
    k = np.searchsorted(edges, values, side="right") - 1
    k[values == edges[-1]] = len(edges) - 2
    k[k >= len(edges) - 1] = -1
    return k


def each_bin(by: np.ndarray, edges: np.ndarray) -> Iterator[tuple[str, float, float, np.ndarray]]:
    """(key, lo, hi, selection) of every bin."""
    k = bin_index(by, edges)
    for b, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        yield bin_key(lo, hi), float(lo), float(hi), k == b


def check_variables(task: str, bins: dict, columns: Sequence[str]) -> None:
    for var in bins:
        if var not in columns:
            raise E2EError(
                f"params.yaml evaluate.bins.{task}.{var}: not a column of the predictions; "
                f"available: {', '.join(c for c in columns if c not in ('split', 'row'))}"
            )


def resolve(test: pd.DataFrame, task: str, bins: dict) -> dict[str, np.ndarray]:
    """variable -> bin edges; a number of bins spans the test split's range of the variable."""
    check_variables(task, bins, list(test.columns))
    return {
        var: np.asarray(spec, np.float64)
        if isinstance(spec, (list, tuple))
        else axis_edges(test[var].to_numpy(np.float64), int(spec))
        for var, spec in bins.items()
    }


def crop_energies(
    images: SparseImages, channel_names: Sequence[str], rows: ArrayLike, chunk: int = 65536
) -> dict[str, np.ndarray]:
    """{energy_total, energy_max} of channel "energy" per event of `rows` (as stored, after the
    conversion's scale), read sparse in chunks: {} where no channel has that name."""
    if ENERGY_CHANNEL not in channel_names:
        return {}
    c, (_, h, w) = list(channel_names).index(ENERGY_CHANNEL), images.image_shape
    rows = np.asarray(rows, np.int64)
    total, peak = np.zeros(len(rows)), np.zeros(len(rows))
    for start in range(0, len(rows), chunk):
        part = images.gather(rows[start : start + chunk])
        event = np.repeat(np.arange(len(part.counts)), part.counts)
        keep = part.index // (h * w) == c
        v, event = part.values[keep].astype(np.float64), event[keep]  # still grouped by event, in order
        counts = np.bincount(event, minlength=len(part.counts))
        total[start : start + len(counts)] = np.bincount(event, v, len(counts))
        filled, first = counts > 0, np.cumsum(counts) - counts
        top = np.zeros(len(counts))
        top[filled] = np.maximum.reduceat(v, first[filled]) if v.size else 0.0
        # a pixel not stored is a zero, which the dense maximum sees too (energies can be negative)
        peak[start : start + len(counts)] = np.where(counts < h * w, np.maximum(top, 0.0), top)
    return {"energy_total": total, "energy_max": peak}


def _inverse(fpr: float) -> float:
    return 1.0 / fpr if fpr > 0 else (float("inf") if fpr == 0 else float("nan"))


def measurable(y: np.ndarray) -> bool:
    return len(y) >= MIN_EVENTS and 0 < np.sum(y == 1) < len(y)


def classifier_bin(y: np.ndarray, s: np.ndarray, working_points: Sequence[float], n_boot: int) -> dict[str, float]:
    """n, ROC-AUC and 1/FPR at each working point (the bin's own threshold), with 95 % intervals."""
    out: dict[str, float] = {"n": len(y)}
    if not measurable(y):
        return out
    lo, hi = metrics.bootstrap_intervals(metrics.classifier_statistic(y, s, working_points), len(y), n_boot)
    out.update(roc_auc=metrics.roc_auc(y, s), roc_auc_ci_lo=lo[0], roc_auc_ci_hi=hi[0])
    for k, wp in enumerate(working_points, start=1):
        key = rejection_key(wp)  # a high FPR is a low rejection: the interval's ends swap
        out.update(
            {
                key: metrics.background_rejection(y, s, wp),
                f"{key}_ci_lo": _inverse(hi[k]),
                f"{key}_ci_hi": _inverse(lo[k]),
            }
        )
    return out


def regression_bin(t: np.ndarray, p: np.ndarray, n_boot: int) -> dict[str, float]:
    """n, response and resolution with their 95 % bootstrap intervals."""
    out: dict[str, float] = {"n": len(t)}
    if len(t) < MIN_EVENTS:
        return out
    lo, hi = metrics.bootstrap_intervals(metrics.response_statistic(t, p), len(t), n_boot, LEVEL)
    return {
        **out,
        "response": metrics.response(t, p),
        "response_ci_lo": lo[0],
        "response_ci_hi": hi[0],
        "resolution": metrics.resolution(t, p),
        "resolution_ci_lo": lo[1],
        "resolution_ci_hi": hi[1],
    }


def binned_metrics(test: pd.DataFrame, task: Task, ep: EvaluateParams) -> dict[str, dict[str, dict[str, float]]]:
    """{variable: {bin key: metrics}} of the test split; ep is params `evaluate`."""
    t, p = test["truth"].to_numpy(np.float64), test["prediction"].to_numpy(np.float64)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for var, edges in resolve(test, task.name, ep.bins.get(task.name, {})).items():
        by = test[var].to_numpy(np.float64)
        out[var] = {
            key: classifier_bin(t[sel], p[sel], ep.working_points, ep.bootstrap)
            if task.is_classification
            else regression_bin(t[sel], p[sel], ep.bootstrap)
            for key, _, _, sel in each_bin(by, edges)
        }
    return out
